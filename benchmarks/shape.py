"""Shaping cost and result on the built-in scene: activation vs jacobian objective side by side.

    python benchmarks/shape.py [--workdir /tmp/structgs-bench] [--iters 800] [--associations tracked overlap none]
                               [--side-width 64]   (0: fine-tune the decoder itself)

Fits the built-in scene once (or reuses the fit), then shapes it with each objective and
prints time, peak memory, fraction touched, PSNR before/after and the activation cosine
summary (within-object min, between-object max) per branch.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import builtin_scene, peak_rss_mb  # noqa: E402


def run_one(run: Path, masks: Path, out: Path, objective: str, association: str, iters: int, side_width: int) -> None:
    import json

    from structgs.shaping.config import ShapeConfig
    from structgs.shaping.report import format_matrix
    from structgs.pipeline.shape import shape_run

    shutil.rmtree(out, ignore_errors=True)
    cfg = ShapeConfig(objective=objective, association=association, iters=iters, side_width=side_width,
                      checkpoint_every=0)
    rep = shape_run(run, masks, out, cfg, device="cpu", progress=False)
    rep["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps({k: rep[k] for k in ("seconds", "fraction_touched", "psnr_before", "psnr_after", "peak_rss_mb")}))
    print(json.dumps({b: {k: e[k] for k in ("within_min", "between_max")} for b, e in rep["activation_cosine"].items()}))
    print(format_matrix(rep["activation_cosine"]["motion" if "motion" in rep["activation_cosine"] else rep["branches"][0]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-bench"))
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--objectives", nargs="+", default=["activation", "jacobian"])
    ap.add_argument("--associations", nargs="+", default=["tracked"])
    ap.add_argument("--side-width", type=int, default=64, help="0: fine-tune the decoder itself (the paper's way)")
    ap.add_argument("--run", type=Path, default=None, help="a fitted run of the built-in scene (default: fit one)")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run, masks, out, objective, association = args.one
        run_one(Path(run), Path(masks), Path(out), objective, association, args.iters, args.side_width)
        return
    scene = builtin_scene(args.workdir)
    run = args.run or args.workdir / "bench_fit_run"
    if not (run / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "structgs.cli", "fit", str(scene), "--ply", str(scene / "gaussians.ply"),
                        "--out", str(run), "--checkpoint-every", "0"], check=True)
    for association in args.associations:
        masks = scene / "masks"
        if association != "tracked":  # overlap / none get per-view ids, shuffled like raw SAM output
            from structgs.data.synthetic import shuffle_mask_ids

            masks = shuffle_mask_ids(scene / "masks", args.workdir / "masks_shuffled", seed=1)
        for objective in args.objectives:
            if association == "none" and objective == "jacobian":
                print("== objective jacobian, association none: not a combination (the tracker-free mode shapes "
                      "activations only)")
                continue
            print(f"== objective {objective}, association {association}, side width {args.side_width}, {args.iters} steps"
                  + ("" if association == "tracked" else " (ids shuffled per view)"))
            out = args.workdir / f"bench_shape_{objective}_{association}_side{args.side_width}"
            r = subprocess.run([sys.executable, __file__, "--iters", str(args.iters), "--side-width",
                                str(args.side_width), "--one", str(run),
                                str(masks), str(out), objective, association], capture_output=True, text=True)
            print(r.stdout.strip() if r.returncode == 0 else f"failed: {r.stderr.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main()
