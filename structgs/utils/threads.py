"""CPU threading that behaves when cores are shared (two jobs on one machine, a fit and a viewer).

PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for work.
With more busy threads than cores (two structgs jobs on 2 cores), each job's spinning threads
steal the cores the other's working threads need, and both slow down 10-35x
(``benchmarks/threads.py`` measures it). structgs therefore

* asks OpenMP to wait passively after a brief spin (``OMP_WAIT_POLICY=PASSIVE``,
  ``GOMP_SPINCOUNT=10000``) unless the user set a policy or spin count:
  this must happen before the OpenMP runtime starts, so the CLI calls
  :func:`prefer_passive_waiting` before anything imports torch;
* uses as many threads as the cores this process may run on -- its CPU affinity mask (which
  ``taskset`` and container CPU sets restrict), capped by a cgroup CPU quota (``docker --cpus``,
  Kubernetes CPU limits), not the machine's core count -- or ``--threads N``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from structgs.utils.errors import InputError

CGROUP_ROOT = Path("/sys/fs/cgroup")
STRUCTGS_WAITING = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
"""What :func:`prefer_passive_waiting` sets: wait passively, after a brief spin (libgomp, which the
Linux wheels of PyTorch use, honours GOMP_SPINCOUNT even with PASSIVE; other OpenMP runtimes
ignore it and sleep at once). Measured on 2 cores (benchmarks/concurrent_jobs.py, /threads.py,
/shape.py): two jobs together take 0.93x their time one after the other (passive alone 0.78x,
PyTorch's spinning 2.6-3.2x), and a job alone runs at spinning speed; without the spin a
shaping step, many small kernels, took 150 ms instead of 95-105 ms."""


def cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup CPU quota in cores (quota / period), or None when there is none or it cannot be
    read. cgroup v2 keeps it in ``cpu.max`` ("max 100000" or "200000 100000"), v1 in
    ``cpu/cpu.cfs_quota_us`` (-1: none) over ``cpu/cpu.cfs_period_us``."""
    try:
        v2 = cgroup_root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
        else:
            quota = (cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup_root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota == "max" or int(quota) <= 0 or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):  # no cgroup files (macOS, Windows) or an unexpected format
        return None


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may run on: its affinity mask, capped by the cgroup CPU quota rounded
    up; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def prefer_passive_waiting() -> bool:
    """Set :data:`STRUCTGS_WAITING` unless the environment chose a policy or a spin count
    (``OMP_WAIT_POLICY=ACTIVE`` takes spinning back on a dedicated machine). Effective only
    before the OpenMP runtime starts (before torch is imported). Returns whether it was set."""
    if any(k in os.environ for k in STRUCTGS_WAITING):
        return False
    os.environ.update(STRUCTGS_WAITING)
    return True


def configure_threads(threads: int | None = None) -> int:
    """Use ``threads`` intra-op threads (default: :func:`available_cores`, or ``OMP_NUM_THREADS``
    when set). Returns the number in use."""
    import torch

    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else available_cores()
    torch.set_num_threads(threads)
    return torch.get_num_threads()
