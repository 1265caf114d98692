"""What a `structgs view` user gets on a shaped run of the built-in scene, without a browser:
every object clicked, segmented and edited through the EditSession the viewer calls, and the
time of each action.

    python benchmarks/viewer.py [--run outputs/demo/shaped] [--masks outputs/demo/scene/masks]

Per object (a click at the pixel deepest inside it, in the training view that shows most of it):
3D IoU against the scene's labels, and the largest distance of each edit (remove, recolour,
move) from its target; each edit is undone before the next. Then the median time of a pick, a
selection, the splat arrays a redraw uploads, each edit with its undo, and compare (voting).
The pick is timed with the decoded geometry kept (between edits); the first pick after an edit
decodes again, as a redraw does. Prints `RESULT <name> <value>` lines.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=Path("outputs/demo/shaped"), help="a shaped run of the built-in scene")
    ap.add_argument("--masks", type=Path, default=None, help="ground-truth id masks (default: the scene's masks/)")
    args = ap.parse_args()

    import torch

    from structgs.edit.session import EditSession, pixel_ray
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.pipeline.runs import Run
    from structgs.scene import load_dataset
    from structgs.viewer.splats import splat_arrays

    run = Run.open(args.run, device="cpu", needs_shaping=True)
    scene = Path(run.model.scene.data)
    masks = args.masks or scene / "masks"
    ds = load_dataset(scene, masks_dir=masks)
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    session = EditSession(run.model)
    edits = {"remove": session.remove, "recolor": lambda: session.recolor([0.1, 0.8, 0.2]),
             "move": lambda: session.move([0.2, 0.0, 0.0])}

    print(f"{'object':>6} {'Gaussians':>9} {'3D IoU':>7} " + " ".join(f"{k + ' err':>12}" for k in edits))
    worst_iou, worst_err = 1.0, {k: 0.0 for k in edits}
    for k in sorted(int(v) for v in labels.unique() if v > 0):
        view, (x, y) = pick_target_pixel(ds, masks, k)
        session.select(session.pick_pixel(ds.camera(view), x, y).gaussian)
        sel, truth = session.selection, labels == k
        iou = float((sel & truth).sum()) / float((sel | truth).sum())
        errs = {}
        for name, edit in edits.items():
            rec = edit()
            errs[name] = float(np.abs(np.asarray(rec.info["achieved"]) - np.asarray(rec.info["targets"])).max())
            session.undo()
        worst_iou = min(worst_iou, iou)
        worst_err = {n: max(worst_err[n], e) for n, e in errs.items()}
        print(f"{k:>6} {int(sel.sum()):>9} {100 * iou:>7.1f} " + " ".join(f"{errs[n]:>12.4f}" for n in edits))

    def decoded():
        with torch.no_grad():
            return run.model.decode()

    view, (x, y) = pick_target_pixel(ds, masks, int(labels.max()))
    origin, direction = pixel_ray(ds.camera(view), x + 0.5, y + 0.5)
    pick = session.pick_ray(origin, direction)
    timings = {"pick": median_time(lambda: session.pick_ray(origin, direction)),
               "select": median_time(lambda: session.select(pick.gaussian)),
               # after an edit: one decode, then the arrays (colours re-averaged, or kept after a removal / move)
               "redraw_arrays": median_time(lambda: splat_arrays(run.model, decoded()))}
    rgbs = splat_arrays(run.model, session.geometry()).rgbs
    timings["redraw_arrays_same_colours"] = median_time(lambda: splat_arrays(run.model, decoded(), rgbs))
    for name, edit in edits.items():
        timings[f"{name}_and_undo"] = median_time(lambda edit=edit: (edit(), session.undo()))
    cams = ds.split("train")
    id_masks = [ds.mask(c) for c in cams]
    timings["compare"] = median_time(lambda: session.compare(cams, id_masks), repeats=1)
    print(f"{run.model.num_gaussians} Gaussians, {len(cams)} training views; median seconds:")
    for name, t in timings.items():
        print(f"  {name:<18} {t:.3f}")
    print(f"RESULT viewer_worst_object_iou {worst_iou:.4f}")
    for name, e in worst_err.items():
        print(f"RESULT viewer_worst_{name}_target_distance {e:.4f}")
    for name, t in timings.items():
        print(f"RESULT viewer_{name}_s {t:.3f}")


if __name__ == "__main__":
    main()
