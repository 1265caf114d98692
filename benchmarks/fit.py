"""Time and peak memory of both fitting stages on the built-in scene.

    python benchmarks/fit.py [--workdir /tmp/structgs-bench] [--stage1-iters 2000] [--stage2-iters 300]
                             [--compile-rasterizer]

Threading as the CLI sets it (structgs.utils.threads).

Prints seconds per stage and per step, peak RSS, and test PSNR of the fit vs the input PLY.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import builtin_scene, peak_rss_mb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-bench"))
    ap.add_argument("--stage1-iters", type=int, default=2000)
    ap.add_argument("--stage2-iters", type=int, default=300)
    ap.add_argument("--compile-rasterizer", action="store_true", help="stage 2 with the compiled rasterizer kernels")
    args = ap.parse_args()
    from structgs.utils.threads import configure_threads, prefer_passive_waiting

    prefer_passive_waiting()  # before torch starts, as the CLI does
    configure_threads(None)
    import torch

    from structgs.model import SceneInfo
    from structgs.pipeline.fit import starting_gaussians
    from structgs.scene.dataset import load_dataset
    from structgs.training.config import FitConfig
    from structgs.training.fit import Fitter

    scene = builtin_scene(args.workdir)
    out = args.workdir / "bench_fit_run"
    shutil.rmtree(out, ignore_errors=True)
    cfg = FitConfig(stage1_iters=args.stage1_iters, stage2_iters=args.stage2_iters, checkpoint_every=0,
                    compile_rasterizer=args.compile_rasterizer)
    ds = load_dataset(scene, background=cfg.background)
    gen = torch.Generator().manual_seed(cfg.seed)
    targets = starting_gaussians(ds, scene / "gaussians.ply", None, 0, gen)
    f = Fitter(ds, targets, cfg, from_points=False, generator=gen, progress=False)
    f.initialise(SceneInfo(data=str(scene.resolve()), background=cfg.background), {})
    base = peak_rss_mb()
    t0 = time.perf_counter()
    f.train(stop_after="stage1")
    t1 = time.perf_counter()
    mem1 = peak_rss_mb()
    f.train()
    t2 = time.perf_counter()
    mem2 = peak_rss_mb()
    f.model.save_pretrained(out)  # reused by benchmarks/shape.py and query.py
    rep = f.evaluate(reference=targets)
    print(f"built-in scene: {f.model.num_gaussians} Gaussians, {len(f.train_cams)} training views of "
          f"{f.train_cams[0].width}x{f.train_cams[0].height}, {torch.get_num_threads()} threads"
          + (", compiled rasterizer kernels (compiling included in stage 2)" if args.compile_rasterizer else ""))
    print(f"{'stage':<22} {'steps':>6} {'total s':>8} {'s/step':>8} {'peak RSS MB':>12}")
    print(f"{'1 attribute regression':<22} {args.stage1_iters:6d} {t1 - t0:8.1f} {(t1 - t0) / max(args.stage1_iters, 1):8.4f} {mem1:12.0f}")
    print(f"{'2 photometric':<22} {args.stage2_iters:6d} {t2 - t1:8.1f} {(t2 - t1) / max(args.stage2_iters, 1):8.4f} {mem2:12.0f}")
    print(f"(RSS before fitting: {base:.0f} MB)")
    print(f"test PSNR: fitted {rep['psnr_fitted']:.2f} dB, input PLY {rep['psnr_input_ply']:.2f} dB")


if __name__ == "__main__":
    main()
