"""Segmentation and edit leakage of a shaped run of the built-in scene, from any masks.

    python benchmarks/edits.py --run outputs/demo/fitted [--masks truth|sam] [--association tracked] [--scene DIR]
                               [--workdir /tmp/structgs-edits] [--iters 300]

Shapes the fitted run from the scene's ground-truth masks (``truth``: the clean-mask reference,
``tracked`` association by default) or its SAM-like masks (``sam``: what the demo uses, with
``overlap``), unless WORKDIR/shaped-MASKS-ASSOCIATION already holds that shaping, then does what
the demo does on it (``structgs eval``, shaped only): every object segmented from one click (test
mIoU / mBIoU against the ground-truth masks, 3D IoU against the ground-truth labels) and removed,
recoloured and moved three times from that selection (leakage figures of structgs.eval.edits).
Prints the shaping's cosine summary and the report's table; the report goes to
WORKDIR/report-MASKS-ASSOCIATION (replaced on a re-run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a fitted run of the built-in scene (outputs/demo/fitted)")
    ap.add_argument("--scene", type=Path, default=None, help="the built-in scene (default: the run's dataset)")
    ap.add_argument("--masks", choices=("truth", "sam"), default="truth")
    ap.add_argument("--association", choices=("tracked", "overlap", "none"), default=None,
                    help="default: tracked for truth, overlap for sam")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-edits"))
    ap.add_argument("--iters", type=int, default=None, help="shaping steps (default: ShapeConfig's)")
    args = ap.parse_args()

    from structgs.pipeline.evaluate import EvalConfig, evaluate_run, format_report
    from structgs.pipeline.shape import shape_run
    from structgs.shaping.config import ShapeConfig

    if not (args.run / "config.json").is_file():
        raise SystemExit(f"--run {args.run}: not a fitted run (no config.json)")
    scene = args.scene or Path(json.loads((args.run / "config.json").read_text())["meta"]["data"])
    if not (scene / "labels.npy").is_file():
        raise SystemExit(f"{scene}: not the built-in scene (no labels.npy); --run must be a fit of it")
    association = args.association or ("tracked" if args.masks == "truth" else "overlap")
    if args.masks == "sam" and association == "tracked":
        raise SystemExit("--association tracked needs ids that mean the same in every view: use --masks truth")
    masks = scene / ("masks" if args.masks == "truth" else "sam_masks")
    tag = f"{args.masks}-{association}"
    shaped = args.workdir / f"shaped-{tag}"
    if not (shaped / "shape_report.json").is_file():
        cfg = ShapeConfig(association=association) if args.iters is None else \
            ShapeConfig(association=association, iters=args.iters)
        shape_run(args.run, masks, shaped, cfg, device="cpu", gt_labels=scene / "labels.npy",
                  resume=(shaped / "checkpoint").is_dir())
    shape = json.loads((shaped / "shape_report.json").read_text())
    print(f"masks {args.masks}, association {association}, {shape['config']['iters']} steps: shaping "
          f"{shape['seconds']:.0f} s, cosine within-object min / between-object max: "
          + ", ".join(f"{b} {e['within_min']:.3f} / {e['between_max']:.3f}" for b, e in shape["activation_cosine"].items()))
    report = evaluate_run(shaped, scene / "masks", args.workdir / f"report-{tag}",
                          EvalConfig(labels=scene / "labels.npy", methods=("shaped",)), device="cpu", replace=True)
    print(format_report(report))


if __name__ == "__main__":
    main()
