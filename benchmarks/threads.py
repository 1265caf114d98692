"""Two structgs jobs on one machine: time per training step alone and side by side, with
PyTorch's default OpenMP waiting (threads spin), plain passive waiting, and structgs's default
(passive after a brief spin, threads from the affinity mask; structgs.utils.threads).

    python benchmarks/threads.py [--gaussians 20000] [--steps 40]

The workload is one decoder step as fitting and shaping do it: decode every Gaussian's
attributes and back-propagate an L1 loss into the decoder and the latents. Each configuration
runs in fresh processes (the waiting policy is fixed when the OpenMP runtime starts); the
figure is the median seconds per step of each job, after 5 warm-up steps. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, os, sys, time
from structgs.utils.threads import configure_threads
threads = configure_threads(int(sys.argv[3]) if sys.argv[3] != "auto" else None)
import torch
from structgs.decoder import DecoderConfig
from structgs.model import SceneModel
torch.manual_seed(0)
n, steps = int(sys.argv[1]), int(sys.argv[2])
model = SceneModel(DecoderConfig(), n)
with torch.no_grad():
    model.centroids.normal_(); model.latents.normal_(0, 0.1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
times = []
for step in range(steps + 5):
    t = time.perf_counter()
    s = model.decode()
    loss = s.colors.mean() + s.opacities.mean() + s.scales.mean()
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t)
times = sorted(times[5:])
print(json.dumps({"median_s": times[len(times) // 2], "threads": threads,
                  "wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}))
"""


def waiting_env(waiting: dict[str, str]) -> dict[str, str]:
    """This environment without any OpenMP thread or waiting setting, plus ``waiting``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **waiting}


def waiting_rows() -> tuple[tuple[str, dict[str, str]], ...]:
    """The OpenMP waiting settings compared: PyTorch's, plain passive, and structgs's default."""
    from structgs.utils.threads import STRUCTGS_WAITING

    return (("PyTorch default (spinning waits)", {}), ("passive waits, no spin", {"OMP_WAIT_POLICY": "PASSIVE"}),
            ("structgs default (passive after a brief spin)", dict(STRUCTGS_WAITING)))


def run_jobs(count: int, waiting: dict[str, str], threads: str, gaussians: int, steps: int) -> list[dict]:
    env = waiting_env(waiting)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(gaussians), str(steps), threads], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from structgs.utils.threads import available_cores

    print(f"{available_cores()} cores in this process's affinity mask; {args.gaussians} Gaussians, "
          f"{args.steps} steps per job")
    print(f"{'configuration':<48} {'jobs':>4} {'threads':>7} {'s/step (each job)':>20} {'slowdown':>9}")
    alone = {}
    for label, waiting in waiting_rows():
        for count, threads in ((1, "auto"), (2, "auto"), (2, "1")):
            res = run_jobs(count, waiting, threads, args.gaussians, args.steps)
            times = [r["median_s"] for r in res]
            if count == 1:
                alone[label] = times[0]
            slow = max(times) / alone[label]
            print(f"{label:<48} {count:>4} {res[0]['threads']:>7} {' / '.join(f'{t:.4f}' for t in times):>20} "
                  f"{slow:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
