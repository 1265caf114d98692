"""Rasterizer speed and memory: forward and forward+backward for 5k/30k/100k Gaussians at 64^2-256^2.

    python benchmarks/render.py                # torch backend on CPU (and gsplat if CUDA exists)
    python benchmarks/render.py --sizes 30000 --resolutions 128 --compile
    python benchmarks/render.py --sizes 20000 --resolutions 128 [--compile]   # RESULT render_vs_floor

Threading as the CLI sets it (structgs.utils.threads). Each configuration runs in its own
process so that peak memory (CPU: peak RSS above the process's baseline; CUDA:
torch.cuda.max_memory_allocated) is its own. Times are medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(n: int, res: int, backend: str, device: str, repeats: int, compile_kernels: bool) -> dict:
    import torch
    from helpers import make_camera, random_gaussians

    from structgs.render import rasterize

    torch.manual_seed(0)
    # a surface-like scene: Gaussians sized so that ~30k cover the view like a trained scene
    m, q, s, o, c = random_gaussians(n=n, dtype=torch.float32, spread=1.0, scale=(-4.5, -3.0), opacity=(0.2, 0.9))
    cam = make_camera(width=res, height=res)
    params = [t.to(device).requires_grad_() for t in (m, q, s, o, c)]
    kw = dict(backend=backend, compile_kernels=compile_kernels) if backend == "torch" else dict(backend=backend)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    out = rasterize(*params, cam, **kw)  # warm-up (and compile)
    out.image.sum().backward()
    base = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fwd, both = [], []
    for _ in range(repeats):
        for p in params:
            p.grad = None
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            rasterize(*params, cam, **kw)
        sync()
        t1 = time.perf_counter()
        out = rasterize(*params, cam, **kw)
        (out.image.sum() + out.alpha.sum()).backward()
        sync()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        both.append(t2 - t1)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mb() - base
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"n": n, "res": res, "backend": backend, "device": device, "forward_s": med(fwd),
            "forward_backward_s": med(both), "peak_mb": peak, "threads": torch.get_num_threads()}


FLOOR_S = {(5000, 128): 0.09, (20000, 128): 0.18, (20000, 256): 0.35, (100000, 256): 0.53}
"""Forward + backward seconds of the fastest CPU design measured for this rasterizer on these
machines (../shared/design/RENDER.md: 2 threads, compiled chunk kernels), by (N, resolution)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 30000, 100000])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch backend: torch.compile the chunk kernels")
    ap.add_argument("--one", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # as the CLI runs: OpenMP waiting and threads set before torch starts
        from structgs.utils.threads import configure_threads, prefer_passive_waiting

        prefer_passive_waiting()
        configure_threads(None)
        n, res, backend, device = args.one.split(",")
        print(json.dumps(run_one(int(n), int(res), backend, device, args.repeats, args.compile)))
        return
    import torch

    configs = [("torch", "cpu")]
    if torch.cuda.is_available():
        configs += [("torch", "cuda")]
        try:
            import gsplat  # noqa: F401

            configs += [("gsplat", "cuda")]
        except ImportError:
            print("gsplat not installed: skipping the gsplat backend")
    print(f"{'backend':8} {'device':6} {'N':>7} {'res':>5} {'forward s':>10} {'fwd+bwd s':>10} {'peak MB':>8}")
    for backend, device in configs:
        for n in args.sizes:
            for res in args.resolutions:
                cmd = [sys.executable, __file__, "--one", f"{n},{res},{backend},{device}", "--repeats", str(args.repeats)]
                if args.compile:
                    cmd.append("--compile")
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    print(f"{backend:8} {device:6} {n:7d} {res:5d}  failed: {r.stderr.strip().splitlines()[-1]}")
                    continue
                d = json.loads(r.stdout.strip().splitlines()[-1])
                floor = FLOOR_S.get((n, res)) if (backend, device) == ("torch", "cpu") else None
                vs = f"  {d['forward_backward_s'] / floor:.2f}x the CPU floor ({floor} s)" if floor else ""
                print(f"{backend:8} {device:6} {n:7d} {res:5d} {d['forward_s']:10.3f} {d['forward_backward_s']:10.3f} "
                      f"{d['peak_mb']:8.0f}{vs}", flush=True)
                if floor and (n, res) == (20000, 128):
                    print(f"RESULT render_vs_floor {d['forward_backward_s'] / floor:.2f}")


if __name__ == "__main__":
    main()
