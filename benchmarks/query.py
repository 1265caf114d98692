"""Shaped segmentation query time vs N (10k ... 1M Gaussians) next to one voting query:
recomputing every activation through the decoder (the exact path) vs one pass over the
activation cache (float16 by default: `--cache-dtype float32` for the exact one), and the
cache's one-time build.

    python benchmarks/query.py [--workdir /tmp/structgs-bench] [--run RUN]

Large N use a decoder with random weights and random latents, laid out like a shaped run
(a 64-wide side channel on every branch; the query cost does not depend on the values). The voting query runs on the built-in scene's run (fitted if needed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import builtin_scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-bench"))
    ap.add_argument("--run", type=Path, default=None, help="a fitted run of the built-in scene (default: fit one)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--cache-dtype", choices=["float16", "float32"], default="float16")
    args = ap.parse_args()
    import numpy as np
    import torch

    from structgs.decoder import DecoderConfig
    from structgs.edit.jacobian import default_segmentation_branch, jacobian_cosine
    from structgs.model.activation_cache import ActivationCache
    from structgs.edit.voting import segment_by_voting
    from structgs.model import SceneModel
    from structgs.scene import load_dataset

    scene = builtin_scene(args.workdir)
    run = args.run or args.workdir / "bench_fit_run"
    if not (run / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "structgs.cli", "fit", str(scene), "--ply", str(scene / "gaussians.ply"),
                        "--out", str(run), "--checkpoint-every", "0"], check=True)
    model = SceneModel.from_pretrained(run)
    ds = load_dataset(scene, masks_dir=scene / "masks")
    cams = ds.split("train")
    masks = [ds.mask(c) == 2 for c in cams]
    t_vote = _median(lambda: segment_by_voting(model, cams, masks, "voting"))
    print(f"one voting query on the built-in scene ({model.num_gaussians} Gaussians, {len(cams)} views): {t_vote:.3f} s "
          f"(median of 3 after a warm-up)")
    seed = torch.zeros(model.num_gaussians, dtype=torch.bool)
    seed[torch.from_numpy(np.load(scene / "labels.npy")) == 2] = True
    dtype = getattr(torch, args.cache_dtype)

    def use_cache(m):
        branch = default_segmentation_branch(m)
        m.activation_caches[branch] = ActivationCache.build(m, branch, dtype=dtype)
        return m.activation_caches[branch]

    use_cache(model)
    t_same = _median(lambda: jacobian_cosine(model, seed), repeats=21)
    print(f"one shaped (cached) query on the same scene and object: {t_same * 1000:.2f} ms, "
          f"{t_vote / t_same:.0f}x faster")
    print(f"RESULT query_vs_voting {t_vote / t_same:.1f}")
    print(f"{'N':>9} {'recompute s':>12} {'cache build s':>14} {'cached query s':>15} {'plain matvec s':>15} "
          f"{'query / matvec':>15} {'speed-up':>9} {'voting / cached':>16}")
    for n in args.sizes:
        torch.manual_seed(0)
        layout = DecoderConfig()
        m = SceneModel(DecoderConfig(side_width=64, side_branches=layout.branches, side_norm=8.0), n)
        with torch.no_grad():
            m.centroids.uniform_(-1, 1)
            m.latents.normal_()
        sel = torch.zeros(n, dtype=torch.bool)
        sel[: max(1, n // 100)] = True
        t_exact = _median(lambda: jacobian_cosine(m, sel, use_cache=False))
        t0 = time.perf_counter()
        unit = use_cache(m).unit
        t_build = time.perf_counter() - t0
        t_cached = _median(lambda: jacobian_cosine(m, sel), repeats=11)
        direction = torch.nn.functional.normalize(torch.randn(unit.shape[1]), dim=0).to(unit.dtype)
        t_matvec = _median(lambda: unit @ direction, repeats=11)  # the floor: one pass over the same matrix
        print(f"{n:9d} {t_exact:12.3f} {t_build:14.3f} {t_cached:15.4f} {t_matvec:15.4f} {t_cached / t_matvec:14.2f}x "
              f"{t_exact / t_cached:8.0f}x {t_vote / t_cached:16.0f}", flush=True)
        if n == 1_000_000:
            print(f"RESULT query_1m_vs_matvec {t_cached / t_matvec:.2f}")


def _median(query, repeats: int = 3) -> float:
    query()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        query()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    main()
