"""Affordance transfer on the built-in scene's parts (ground, the objects' tops, their sides):
3D IoU per part of single-view transfer vs voting over views vs lifted features, when the
2D patch labels are wrong at 20-40 % of the patches (the voting paper's Table II, in 3D).

    python benchmarks/affordance.py --run outputs/demo/fitted [--rates 0.2 0.3 0.4] [--patch 8]

The patch labels stand in for DINOv2 + kNN: each training view's ground-truth part map is taken
per ``patch`` x ``patch`` cell (8 px at 128^2: a 16 x 16 grid, as DINOv2 gives at 224^2) and
``rate`` of the cells get another label at random. Voting: arg-max of the masked-gradient votes
over the 24 views; single view: each Gaussian labelled at its best pixel of its best view;
lifted: noisy one-hot patch features (plus N(0, 0.3) noise) lifted onto the Gaussians and
classified by their nearest class. Prints a table and ``RESULT`` lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a fitted run of the built-in scene")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.3, 0.4])
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import numpy as np
    import torch

    from structgs.data import SceneSpec, ensure_builtin_scene
    from structgs.data.mask_noise import corrupt_patch_labels
    from structgs.edit.affordance import ExampleBank, classify, lift_features, single_view_labels, vote_labels
    from structgs.pipeline.runs import Run
    from structgs.utils.labels import patch_majority

    run = Run.open(args.run)
    scene = Path(run.model.scene.data)
    ensure_builtin_scene(scene, SceneSpec(), progress=False)  # adds parts to a scene written before they existed
    parts = torch.from_numpy(np.load(scene / "parts.npy"))
    names = {1: "ground", 2: "top", 3: "side"}
    n = int(parts.max()) + 1
    cams = run.dataset.split("train")
    truth = [run.dataset.mask(c, scene / "parts") for c in cams]

    def ious(pred):
        return [100 * float(((pred == k) & (parts == k)).sum() / ((pred == k) | (parts == k)).sum()) for k in names]

    print(f"{len(parts)} Gaussians, {len(cams)} views, patches of {args.patch} px")
    print("| patch labels wrong | method | " + " | ".join(f"3D IoU {v}" for v in names.values()) + " | mean | s |")
    print("|---|---|---|---|---|---|---|")
    for rate in args.rates:
        g = torch.Generator().manual_seed(args.seed)
        noisy = [corrupt_patch_labels(m, rate, n, args.patch, g) for m in truth]
        grids = [torch.nn.functional.one_hot(patch_majority(m, m.shape[0] // args.patch, m.shape[1] // args.patch), n)
                 .float() + 0.3 * torch.randn(m.shape[0] // args.patch, m.shape[1] // args.patch, n, generator=g)
                 for m in noisy]
        results = {}
        t = time.perf_counter()
        results["single view"] = (single_view_labels(run.model, cams, noisy), time.perf_counter() - t)
        t = time.perf_counter()
        results["voting"] = (vote_labels(run.model, cams, noisy, n), time.perf_counter() - t)
        t = time.perf_counter()
        lifted = classify(lift_features(run.model, cams, grids), ExampleBank(torch.eye(n)[1:], torch.arange(1, n)), k=1)
        results["lifted"] = (lifted, time.perf_counter() - t)
        for method, (pred, secs) in results.items():
            per = ious(pred)
            print(f"| {rate:.0%} | {method} | " + " | ".join(f"{v:.1f}" for v in per) +
                  f" | {sum(per) / len(per):.1f} | {secs:.1f} |")
            key = method.replace(" ", "_")
            print(f"RESULT affordance_{key}_{int(rate * 100)}_mean_iou {sum(per) / len(per):.2f}")


if __name__ == "__main__":
    main()
