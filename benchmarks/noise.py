"""Segmentation on SAM-like masks: shaped (tracker-free and overlap) and voting, swept over noise.

    python benchmarks/noise.py --run outputs/demo/fitted [--workdir /tmp/structgs-noise]
        [--levels clean default ...] [--iters 300] [--one-object]

The built-in scene's ground-truth masks are corrupted per view (structgs.data.mask_noise:
merges with a touching mask, splits by a line, boundaries dilated or eroded, boundary
pixels dropped, ids permuted) at each noise level. For every level:

* ``none`` / ``overlap``: ``structgs shape`` on the noisy masks, then every object (the ground
  included) segmented from one pixel (the deepest pixel of the object in the training view
  where it is largest) by shaped segmentation;
* ``voting``: ``structgs masks --oracle-masks NOISY --ply`` associates the noisy masks by
  consensus, then masked-gradient voting for the id under the same pixel.

``--one-object``: the click flow's masks (one object labelled, 0 elsewhere), every object in
turn, shaped and segmented from its click.

Each is scored against the ground truth: test-view mIoU and 3D IoU per object. Results go to
WORKDIR/results.json (levels already there are skipped, so a killed sweep resumes), the table
is printed, and WORKDIR/noise_sweep.png plots mean mIoU against the merge/split probability and
against the boundary jitter.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

# name: (merge = split probability, jitter_max, boundary drop); jitter_min = min(1, jitter_max)
LEVELS = {"clean": (0.0, 0, 0.0), "p0": (0.0, 2, 0.02), "default": (0.1, 2, 0.02), "p0.2": (0.2, 2, 0.02),
          "p0.3": (0.3, 2, 0.02), "j0": (0.1, 0, 0.02), "j1": (0.1, 1, 0.02), "j3": (0.1, 3, 0.02)}
MERGE_SWEEP = ["p0", "default", "p0.2", "p0.3"]
JITTER_SWEEP = ["j0", "j1", "default", "j3"]
METHODS = ("none", "overlap", "voting")


def noise_of(level: str):
    from structgs.data.mask_noise import MaskNoise

    p, jitter, drop = LEVELS[level]
    return MaskNoise(merge=p, split=p, jitter_min=min(1, jitter), jitter_max=jitter, boundary_drop=drop)


def score(model, ds, truth: Path, labels, selections: dict) -> dict:
    from structgs.eval.metrics import iou
    from structgs.pipeline.edit_ops import evaluate_selection

    out = {}
    for k, sel in selections.items():
        res = evaluate_selection(model, ds, truth, "test", k, sel)
        out[k] = {"miou": res["miou"], "iou_3d": 100 * iou(sel, labels == k), "selected": int(sel.sum())}
    return out


def shaped_level(fitted: Path, noisy: Path, out: Path, association: str, iters: int, ds, truth, labels, clicks):
    from structgs.edit import WeightEditor, from_pixels
    from structgs.model import SceneModel
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run

    if not (out / "shape_report.json").is_file():
        shape_run(fitted, noisy, out, ShapeConfig(association=association, iters=iters), device="cpu",
                  gt_labels=ds.root / "labels.npy", resume=(out / "checkpoint").is_dir(), progress=False)
    report = json.loads((out / "shape_report.json").read_text())
    model = SceneModel.from_pretrained(out, "cpu")
    editor = WeightEditor(model)
    t = time.perf_counter()
    sels = {k: editor.segment(from_pixels(model, ds.camera(view), [pixel])) for k, (view, pixel) in clicks.items()}
    per = score(model, ds, truth, labels, sels)
    lift = report["lifting"]
    return {"objects": per, "shape_seconds": report["seconds"], "query_seconds": (time.perf_counter() - t) / len(clicks),
            "noise_estimate": {k: lift.get("noise", {}).get(k) for k in ("merges_per_view", "splits_per_view",
                                                                          "confidence_mean")},
            "label_accuracy": lift.get("accuracy_filled", lift.get("accuracy_per_view"))}


def voting_level(fitted: Path, scene: Path, noisy: Path, out: Path, ds, truth, labels, clicks):
    import torch

    from structgs.edit.voting import segment_by_voting
    from structgs.eval.metrics import matched_agreement
    from structgs.model import SceneModel
    from structgs.pipeline.make_masks import MaskSources, make_masks

    t = time.perf_counter()
    summary = make_masks(scene, out, MaskSources(oracle_masks=noisy, ply=scene / "gaussians.ply"), ids="consensus",
                         progress=False)
    assoc_s = time.perf_counter() - t
    cams = ds.split("train")
    agree = matched_agreement(torch.cat([ds.mask(c, out).flatten() for c in cams]),
                              torch.cat([ds.mask(c, truth).flatten() for c in cams]))
    model = SceneModel.from_pretrained(fitted, "cpu")
    sels = {}
    for k, (view, (x, y)) in clicks.items():
        tid = int(ds.mask(ds.camera(view), out)[y, x])
        sel = torch.zeros(model.num_gaussians, dtype=torch.bool)
        if tid != 0:
            sel = segment_by_voting(model, cams, [ds.mask(c, out) == tid for c in cams])
        sels[k] = sel
    return {"objects": score(model, ds, truth, labels, sels), "association_objects": len(summary["objects"]),
            "association_agreement": 100 * agree, "association_seconds": assoc_s}


def run_level(level: str, fitted: Path, scene: Path, wd: Path, iters: int, methods) -> dict:
    import numpy as np
    import torch

    from structgs.data.mask_noise import corrupt_masks
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.scene.dataset import load_dataset

    ds = load_dataset(scene)
    truth = scene / "masks"
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    clicks = {int(k): pick_target_pixel(ds, truth, int(k)) for k in labels.unique().tolist()}
    noise = noise_of(level)
    noisy = wd / f"masks_{level}"
    if not (noisy / "noise.json").is_file():
        corrupt_masks(truth, noisy, noise, seed=0)
    views = json.loads((noisy / "noise.json").read_text())["views"]
    train = [v for k, v in views.items() if k.startswith("train/")]
    result = {"noise": asdict(noise), "truth_per_view": {k: sum(v[k] for v in train) / len(train)
                                                         for k in ("merged", "split")}}
    for m in methods:
        t = time.perf_counter()
        if m == "voting":
            result[m] = voting_level(fitted, scene, noisy, wd / f"assoc_{level}", ds, truth, labels, clicks)
        else:
            result[m] = shaped_level(fitted, noisy, wd / f"shaped_{level}_{m}", m, iters, ds, truth, labels, clicks)
        r = result[m]["objects"]
        print(f"  {level:8s} {m:8s} mIoU " + " ".join(f"{r[k]['miou']:5.1f}" for k in sorted(r)) +
              "  3D IoU " + " ".join(f"{r[k]['iou_3d']:5.1f}" for k in sorted(r)) + f"  ({time.perf_counter() - t:.0f} s)",
              flush=True)
    return result


def one_object_level(fitted: Path, scene: Path, wd: Path, iters: int) -> dict:
    """The click flow: masks with one id (the object) and 0 elsewhere, shaped with the default
    association; the object is then segmented from its click. Every object, one shaping each."""
    import numpy as np
    import torch

    from structgs.edit import WeightEditor, from_pixels
    from structgs.model import SceneModel
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.scene.dataset import load_dataset
    from structgs.scene.images import save_id_mask
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run

    ds = load_dataset(scene)
    truth = scene / "masks"
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    out = {}
    for k in labels.unique().tolist():
        masks = wd / f"masks_one_{k}"
        for cam in ds.split("train"):
            save_id_mask((ds.mask(cam, truth) == k).long(), masks / f"{cam.name}.png")
        run = wd / f"shaped_one_{k}"
        if not (run / "shape_report.json").is_file():
            shape_run(fitted, masks, run, ShapeConfig(iters=iters), device="cpu", progress=False,
                      resume=(run / "checkpoint").is_dir())
        model = SceneModel.from_pretrained(run, "cpu")
        view, pixel = pick_target_pixel(ds, truth, k)
        sel = WeightEditor(model).segment(from_pixels(model, ds.camera(view), [pixel]))
        out[k] = score(model, ds, truth, labels, {k: sel})[k]
        print(f"  one-object masks, object {k}: test mIoU {out[k]['miou']:.1f}, 3D IoU {out[k]['iou_3d']:.1f}", flush=True)
    return {"objects": out}


def mean_miou(entry: dict) -> float:
    vals = [o["miou"] for o in entry["objects"].values()]
    return sum(vals) / len(vals)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, sweep, xs, xlabel in ((axes[0], MERGE_SWEEP, [LEVELS[k][0] for k in MERGE_SWEEP],
                                   "merge = split probability per mask (jitter 1-2 px)"),
                                  (axes[1], JITTER_SWEEP, [LEVELS[k][1] for k in JITTER_SWEEP],
                                   "boundary jitter, max px (merge = split 0.1)")):
        for m, style in zip(METHODS, ("o-", "s-", "^--")):
            pts = [(x, results[k][m]) for x, k in zip(xs, sweep) if k in results and m in results[k]]
            if pts:
                ax.plot([p[0] for p in pts], [mean_miou(p[1]) for p in pts], style, label=f"shaped {m}" if m != "voting"
                        else "voting (consensus-associated masks)")
                ax.fill_between([p[0] for p in pts], [min(o["miou"] for o in p[1]["objects"].values()) for p in pts],
                                [mean_miou(p[1]) for p in pts], alpha=0.12)
        if "none" in results.get("clean", {}):
            ax.axhline(mean_miou(results["clean"]["none"]), color="grey", lw=0.8, ls=":", label="shaped none, clean masks")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("one-click test mIoU")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Built-in scene, SAM-like masks: segmentation vs mask noise\n"
                 "(lines: mean over the 5 objects; shaded: down to the worst object)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def table(results: dict) -> str:
    lines = ["| level | merge/split p | jitter px | method | mean mIoU | worst object mIoU | worst 3D IoU |",
             "|---|---|---|---|---|---|---|"]
    for level, r in results.items():
        p, j, _ = LEVELS[level]
        for m in METHODS:
            if m not in r:
                continue
            objs = r[m]["objects"].values()
            lines.append(f"| {level} | {p} | {min(1, j)}-{j} | {m} | {mean_miou(r[m]):.1f} | "
                         f"{min(o['miou'] for o in objs):.1f} | {min(o['iou_3d'] for o in objs):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a fitted run of the built-in scene (outputs/demo/fitted)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-noise"))
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--iters", type=int, default=None, help="shaping steps (default: ShapeConfig's)")
    ap.add_argument("--one-object", action="store_true", help="also the click flow's one-object masks, every object")
    args = ap.parse_args()
    import torch

    from structgs.shaping.config import ShapeConfig
    from structgs.utils.io import write_json

    if args.iters is None:
        args.iters = ShapeConfig().iters

    torch.set_num_threads(2)
    args.workdir.mkdir(parents=True, exist_ok=True)
    from structgs.model import SceneModel
    from structgs.pipeline.runs import run_dataset

    scene = run_dataset(SceneModel.from_pretrained(args.run, "cpu"), None).root
    path = args.workdir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for level in args.levels:
        todo = [m for m in args.methods if m not in results.get(level, {})]
        if not todo:
            continue
        done = results.get(level, {})
        results[level] = {**done, **run_level(level, args.run, scene, args.workdir, args.iters, todo)}
        write_json(path, results)
        plot(results, args.workdir / "noise_sweep.png")
    if args.one_object and "one_object" not in results:
        results["one_object"] = one_object_level(args.run, scene, args.workdir, args.iters)
        write_json(path, results)
    print(table({k: results[k] for k in LEVELS if k in results}))
    if "one_object" in results:
        print("one-object masks (tracked): " + ", ".join(f"object {k}: mIoU {r['miou']:.1f} / 3D IoU {r['iou_3d']:.1f}"
                                                          for k, r in results["one_object"]["objects"].items()))
    print(f"results: {path}\nplot: {args.workdir / 'noise_sweep.png'}")


if __name__ == "__main__":
    main()
