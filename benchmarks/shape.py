"""Shaping cost and result on the built-in scene: time, memory and the shaping targets per mode.

    python benchmarks/shape.py [--gaussians 30000] [--workdir /tmp/structgs-bench] [--iters 800]
                               [--objectives activation jacobian] [--associations tracked overlap none]
                               [--side-width 64]   (0: fine-tune the decoder itself)

Generates the built-in scene with that many Gaussians and fits it once (or reuses the fit, or
``--run``), then shapes it with each objective and association in a fresh process and prints the
wall time of the whole ``shape_run`` call (lifting, training, report and writing the run), peak
memory, fraction touched, PSNR before/after and the activation cosine summary (within-object
min, between-object max, worst over the branches; targets >= 0.9 and <= 0.1). ``tracked`` uses
the scene's masks; ``overlap`` and ``none`` the same masks with ids shuffled per view, like raw
SAM output, or (``--sam-like``) the scene's SAM-like masks: merged, split, jittered, ids per view. Prints ``RESULT shape_tracked_s`` and ``RESULT shape_none_s`` (activation objective). Each run gets
structgs's threading defaults, as the CLI sets them (structgs.utils.threads).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import builtin_scene, peak_rss_mb  # noqa: E402

WITHIN_MIN, BETWEEN_MAX = 0.9, 0.1  # the shaping targets, on every object and pair of every branch


def run_one(run: Path, masks: Path, out: Path, objective: str, association: str, iters: int, side_width: int) -> None:
    import time

    from structgs.pipeline.shape import shape_run
    from structgs.shaping.config import ShapeConfig
    from structgs.shaping.report import format_matrix

    shutil.rmtree(out, ignore_errors=True)
    cfg = ShapeConfig(objective=objective, association=association, iters=iters, side_width=side_width,
                      checkpoint_every=0)
    start = time.perf_counter()
    rep = shape_run(run, masks, out, cfg, device="cpu", progress=False)
    wall = time.perf_counter() - start
    cos = rep["activation_cosine"]
    within = min(e["within_min"] for e in cos.values())
    between = max(e["between_max"] for e in cos.values())
    summary = {"wall_s": round(wall, 1), "lift_and_train_s": round(rep["seconds"], 1),
               "peak_rss_mb": round(peak_rss_mb()), "fraction_touched": round(rep["fraction_touched"], 4),
               "psnr_before": round(rep["psnr_before"], 2), "psnr_after": round(rep["psnr_after"], 2),
               "within_min": round(within, 3), "between_max": round(between, 3),
               "targets_met": within >= WITHIN_MIN and between <= BETWEEN_MAX}
    print(json.dumps(summary))
    print(json.dumps({b: {k: round(e[k], 3) for k in ("within_min", "between_max")} for b, e in cos.items()}))
    print(format_matrix(cos["motion" if "motion" in cos else rep["branches"][0]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=30000, help="Gaussians of the generated scene")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-bench"))
    ap.add_argument("--iters", type=int, default=None, help="shaping steps (default: ShapeConfig's)")
    ap.add_argument("--objectives", nargs="+", default=["activation"])
    ap.add_argument("--associations", nargs="+", default=["tracked", "none"])
    ap.add_argument("--side-width", type=int, default=64, help="0: fine-tune the decoder itself (the paper's way)")
    ap.add_argument("--run", type=Path, default=None, help="a fitted run of the scene (default: fit one)")
    ap.add_argument("--sam-like", action="store_true",
                    help="overlap / none shape from the scene's SAM-like masks (merged, split, jittered) instead")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.iters is None:
        from structgs.shaping.config import ShapeConfig

        args.iters = ShapeConfig().iters
    if args.one:  # as `structgs shape` runs: OpenMP waiting and threads set before torch starts
        from structgs.utils.threads import configure_threads, prefer_passive_waiting

        prefer_passive_waiting()
        configure_threads(None)
        run, masks, out, objective, association = args.one
        run_one(Path(run), Path(masks), Path(out), objective, association, args.iters, args.side_width)
        return
    scene = builtin_scene(args.workdir, args.gaussians)
    run = args.run or args.workdir / f"bench_fit_run-{args.gaussians}"
    if not (run / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "structgs.cli", "fit", str(scene), "--ply", str(scene / "gaussians.ply"),
                        "--out", str(run), "--checkpoint-every", "0"], check=True)
    for association in args.associations:
        masks = scene / "masks"
        if association != "tracked" and args.sam_like:
            masks = scene / "sam_masks"
        elif association != "tracked":  # overlap / none get per-view ids, shuffled like raw SAM output
            from structgs.data.synthetic import shuffle_mask_ids

            masks = shuffle_mask_ids(scene / "masks", args.workdir / f"masks_shuffled-{args.gaussians}", seed=1)
        for objective in args.objectives:
            if association == "none" and objective == "jacobian":
                print("== objective jacobian, association none: not a combination (the tracker-free mode shapes "
                      "activations only)")
                continue
            print(f"== {args.gaussians} Gaussians, objective {objective}, association {association}, side width "
                  f"{args.side_width}, {args.iters} steps" + ("" if association == "tracked" else " (SAM-like masks)" if args.sam_like else " (ids shuffled per view)"))
            out = args.workdir / f"bench_shape-{args.gaussians}_{objective}_{association}_side{args.side_width}_{args.iters}"
            r = subprocess.run([sys.executable, __file__, "--iters", str(args.iters), "--side-width",
                                str(args.side_width), "--one", str(run),
                                str(masks), str(out), objective, association], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"failed: {r.stderr.strip().splitlines()[-1]}", flush=True)
                continue
            print(r.stdout.strip(), flush=True)
            if objective == "activation" and association in ("tracked", "none"):
                wall = json.loads(r.stdout.splitlines()[0])["wall_s"]
                print(f"RESULT shape_{association}_s {wall}", flush=True)


if __name__ == "__main__":
    main()
