"""Mask sources on the built-in scene with the oracle segmenter (ids shuffled per view).

    python benchmarks/masks.py [--workdir /tmp/structgs-bench] [--drop 0.25]

Prints (1) automatic masks + cross-view association: objects found and the fraction of pixels
whose id agrees with the ground truth after an optimal id matching, for a perfect oracle and
for one that misses a fraction of the objects per view and jitters boundaries by a pixel;
(2) one-click prompted propagation of every object over train+test views: test-view IoU with
and without SA3D-style re-prompting; (3) wall time of each run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import builtin_scene, peak_rss_mb  # noqa: E402


def agreement(ds, pred_dir: Path, truth_dir: Path, cams) -> float:
    import torch

    from structgs.eval.metrics import matched_agreement

    return matched_agreement(torch.cat([ds.mask(c, pred_dir).flatten() for c in cams]),
                             torch.cat([ds.mask(c, truth_dir).flatten() for c in cams]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-bench"))
    ap.add_argument("--drop", type=float, default=0.25, help="fraction of objects the noisy oracle misses per view")
    args = ap.parse_args()
    import torch

    from structgs.data.synthetic import shuffle_mask_ids
    from structgs.eval.metrics import iou
    from structgs.masks import GaussianTracker, OracleSegmenter, associate, order_views, paint_id_map
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.pipeline.make_masks import MaskSources, make_masks
    from structgs.scene.dataset import load_dataset
    from structgs.scene.images import save_id_mask
    from structgs.scene.ply import read_ply

    torch.set_num_threads(2)
    scene = builtin_scene(args.workdir)
    truth = scene / "masks"
    shuffled = shuffle_mask_ids(truth, args.workdir / "masks_shuffled", seed=1)
    ds = load_dataset(scene)
    cams = ds.split("train")
    print(f"built-in scene: {len(cams)} training views, ids shuffled per view")
    for label, drop, jitter in (("perfect oracle", 0.0, False), (f"misses {args.drop:.0%}", args.drop, False),
                                (f"misses {args.drop:.0%} + 1px jitter", args.drop, True)):
        seg = OracleSegmenter.from_dataset(ds, shuffled, split="train", drop_probability=drop, jitter=jitter, seed=5)
        tracker = GaussianTracker(read_ply(scene / "gaussians.ply"), {c.name: c for c in ds.all_cameras})
        order = [cams[i] for i in order_views(cams)]
        t0 = time.perf_counter()
        seq = associate(seg, tracker, [c.name for c in order], [ds.image(c) for c in order], progress=False)
        dt = time.perf_counter() - t0
        out = args.workdir / "masks_assoc"
        for name, id_map in seq.id_maps.items():
            save_id_mask(id_map, out / f"{name}.png")
        bound = ""
        if jitter:  # jitter alone bounds the agreement: the jittered masks under their true ids
            seg2 = OracleSegmenter.from_dataset(ds, truth, split="train", jitter=True, seed=5)
            for c in cams:
                seg2.set_image(c.name, ds.image(c))
                gt = ds.mask(c, truth)
                # each jittered proposal under the true id it mostly covers
                props = {int(gt[p.mask].mode().values): p.mask for p in seg2.automatic() if p.mask.any()}
                save_id_mask(paint_id_map(props, tuple(gt.shape)), args.workdir / "masks_jitter" / f"{c.name}.png")
            bound = f" (jittered masks with true ids: {100 * agreement(ds, args.workdir / 'masks_jitter', truth, cams):.2f}%)"
        print(f"association, {label:28s}: {len(seq.objects)} objects (truth {len(truth_ids(ds, truth, cams))}), "
              f"pixel agreement {100 * agreement(ds, out, truth, cams):.2f}%{bound}, {dt:.1f} s")
    print("one-click propagation over train+test views (click: the deepest pixel of the object in the view where it is largest)")
    for target in sorted(truth_ids(ds, truth, cams)):
        if target == 1:
            continue  # the ground: not a click target
        view, pixel = pick_target_pixel(ds, truth, target)
        row = []
        for refine in (True, False):
            t0 = time.perf_counter()
            make_masks(scene, args.workdir / "masks_prompt", MaskSources(oracle_masks=shuffled, ply=scene / "gaussians.ply"),
                       split="all", view=view, pixels=[pixel], refine=refine, progress=False)
            ious = [iou(ds.mask(c, args.workdir / "masks_prompt") == 1, ds.mask(c, truth) == target)
                    for c in ds.split("test")]
            row.append(f"{'refined' if refine else 'tracker only'} mIoU {100 * sum(ious) / len(ious):5.1f} "
                       f"({time.perf_counter() - t0:.1f} s)")
        print(f"  object {target}: " + ", ".join(row))
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def truth_ids(ds, truth: Path, cams) -> set[int]:
    ids: set[int] = set()
    for c in cams:
        ids |= {int(i) for i in ds.mask(c, truth).unique() if int(i) != 0}
    return ids


if __name__ == "__main__":
    main()
