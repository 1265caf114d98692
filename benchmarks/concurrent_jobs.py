"""Two structgs jobs at once vs one after the other: the wall time of the pair, with PyTorch's
default OpenMP waiting (threads spin), plain passive waiting, and structgs's default (passive
after a brief spin, threads from the affinity mask; structgs.utils.threads).

    python benchmarks/concurrent_jobs.py [--gaussians 20000] [--steps 40]

Each job is a fresh process running decoder steps as fitting and shaping do (the worker of
benchmarks/threads.py): import, build, ``steps`` + 5 steps. "Serial" is the sum of two jobs'
wall times run alone, "together" the wall time of the two started at once; on a fair share
the ratio is about 1 (the cores are shared, not wasted). Run it on an otherwise idle machine.
Prints ``RESULT concurrent_vs_serial <ratio>`` (structgs's default). (Not named concurrent.py:
a script's folder comes first on sys.path, and that name would hide the standard library's
``concurrent`` package from every benchmark.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threads import WORKER, waiting_env, waiting_rows  # noqa: E402


def wall(count: int, waiting: dict[str, str], gaussians: int, steps: int) -> float:
    """Seconds until ``count`` jobs started together, with the OpenMP ``waiting`` variables, have
    all finished."""
    env = waiting_env(waiting)
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(gaussians), str(steps), "auto"], env=env,
                              stdout=subprocess.DEVNULL) for _ in range(count)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a job failed")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from structgs.utils.threads import available_cores

    print(f"{available_cores()} cores; two jobs of {args.steps + 5} decoder steps on {args.gaussians} Gaussians each")
    print(f"{'OpenMP waiting':<46} {'serial s':>9} {'together s':>11} {'together / serial':>18}")
    for label, waiting in waiting_rows():
        serial = wall(1, waiting, args.gaussians, args.steps) + wall(1, waiting, args.gaussians, args.steps)
        together = wall(2, waiting, args.gaussians, args.steps)
        print(f"{label:<46} {serial:>9.1f} {together:>11.1f} {together / serial:>17.2f}x", flush=True)
        if label.startswith("structgs default"):
            result = together / serial
    print(f"RESULT concurrent_vs_serial {result:.3f}")


if __name__ == "__main__":
    main()
