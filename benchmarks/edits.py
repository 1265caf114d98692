"""Segmentation and edit leakage of a shaped run of the built-in scene, from any masks.

    python benchmarks/edits.py --run outputs/demo/fitted [--masks truth|sam] [--association tracked] [--scene DIR]
                               [--workdir /tmp/structgs-edits] [--iters 800]

Shapes the fitted run from the scene's ground-truth masks (``truth``: the clean-mask reference,
``tracked`` association by default) or its SAM-like masks (``sam``: what the demo uses, with
``overlap``), unless WORKDIR/shaped-MASKS-ASSOCIATION already holds that shaping, then does what
the demo does on it: every object segmented from one click (test mIoU / mBIoU against the
ground-truth masks, 3D IoU against the ground-truth labels) and removed, recoloured and moved
three times from that selection (leakage figures of structgs.eval.edits). Prints the demo's
tables and writes them with the shaping's cosine summary to WORKDIR/edits-MASKS-ASSOCIATION.json.
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
    ap.add_argument("--iters", type=int, default=800, help="shaping steps")
    args = ap.parse_args()

    import numpy as np
    import torch

    from structgs.edit import WeightEditor
    from structgs.model import SceneModel
    from structgs.pipeline.demo import format_tables, segment_and_edit
    from structgs.scene.dataset import load_dataset
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run
    from structgs.utils.io import write_json

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
        shape_run(args.run, masks, shaped, ShapeConfig(association=association, iters=args.iters), device="cpu",
                  gt_labels=scene / "labels.npy", resume=(shaped / "checkpoint").is_dir())
    report = json.loads((shaped / "shape_report.json").read_text())
    model = SceneModel.from_pretrained(shaped, "cpu")
    ds = load_dataset(scene, masks_dir=scene / "masks")
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    summary: dict = {"masks": args.masks, "association": association,
                     "shaping": {k: report[k] for k in ("seconds", "fraction_touched", "psnr_before", "psnr_after")},
                     "activation_cosine": {b: {k: e[k] for k in ("within_min", "between_max")}
                                           for b, e in report["activation_cosine"].items()}}
    segment_and_edit(WeightEditor(model), ds, labels, sorted(int(k) for k in labels.unique() if k >= 2), summary)
    write_json(args.workdir / f"edits-{tag}.json", summary)
    print(f"masks {args.masks}, association {association}: shaping {report['seconds']:.0f} s, cosine "
          + ", ".join(f"{b} {e['within_min']:.3f} / {e['between_max']:.3f}" for b, e in summary["activation_cosine"].items()))
    print(format_tables(summary))


if __name__ == "__main__":
    main()
