"""CPU threading that behaves when cores are shared (two jobs on one machine, a fit and a viewer).

PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for work.
With more busy threads than cores (two structgs jobs on 2 cores), each job's spinning threads
steal the cores the other's working threads need, and both slow down 10-35x
(``benchmarks/threads.py`` measures it). structgs therefore

* asks OpenMP to wait passively (``OMP_WAIT_POLICY=PASSIVE``) unless the user set a policy:
  this must happen before the OpenMP runtime starts, so the CLI calls
  :func:`prefer_passive_waiting` before anything imports torch;
* uses as many threads as the cores this process may run on (its CPU affinity mask, which
  ``taskset`` and container CPU sets restrict), not the machine's core count, or ``--threads N``.
"""

from __future__ import annotations

import os

from structgs.utils.errors import InputError


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment chose a policy. Effective only
    before the OpenMP runtime starts (before torch is imported). Returns whether it was set."""
    if "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
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
