"""``structgs demo``: the whole job on the built-in scene.

generate the scene -> render the input PLY -> fit the decoder -> shape it with the scene's
masks -> segment every object from one pixel -> remove / recolor / move one object each,
writing before/after PNGs and a summary table. Finished stages are reused when re-run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from structgs.data.synthetic import SceneSpec, ensure_builtin_scene
from structgs.edit import SceneEditor, from_pixels
from structgs.eval.metrics import iou
from structgs.model import SceneModel
from structgs.pipeline.edit_ops import evaluate_selection, pick_target_pixel
from structgs.scene.dataset import load_dataset
from structgs.scene.images import save_rgb
from structgs.shaping.config import ShapeConfig
from structgs.shaping.shaper import shape_run
from structgs.training.config import FitConfig
from structgs.training.fit import Fitter
from structgs.utils.device import resolve_device
from structgs.utils.io import write_json
from structgs.utils.log import get_logger

log = get_logger("demo")


def run_demo(out: Path, seed: int = 0, device: str = "auto", fit_config: FitConfig | None = None,
             shape_config: ShapeConfig | None = None, spec: SceneSpec | None = None) -> dict:
    out = Path(out)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    scene = ensure_builtin_scene(out / "scene", spec or SceneSpec(seed=seed))
    fitted, shaped = out / "fitted", out / "shaped"
    fit_cfg = fit_config or FitConfig(stage2_iters=100, checkpoint_every=100)
    if not (fitted / "fit_report.json").is_file():
        Fitter(scene, fitted, ply=scene / "gaussians.ply", config=fit_cfg, device=str(dev)).run(
            resume=(fitted / "checkpoint").is_dir())
    if not (shaped / "shape_report.json").is_file():
        shape_run(fitted, scene / "masks", shaped, shape_config or ShapeConfig(), device=str(dev),
                  resume=(shaped / "checkpoint").is_dir())
    import json

    fit_report = json.loads((fitted / "fit_report.json").read_text())
    shape_report = json.loads((shaped / "shape_report.json").read_text())
    model = SceneModel.from_pretrained(shaped, dev)
    ds = load_dataset(scene, masks_dir=scene / "masks")
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    editor = SceneEditor(model)
    summary: dict = {"scene": str(scene), "num_gaussians": model.num_gaussians,
                     "fit": {k: fit_report[k] for k in ("psnr_fitted", "psnr_input_ply")},
                     "shaping": {k: shape_report[k] for k in ("fraction_touched", "psnr_before", "psnr_after", "seconds")},
                     "segmentation": {}, "edits": {}}
    # segment every object from a single click, evaluated on the test views
    objects = sorted(int(k) for k in labels.unique() if k >= 2)
    seeds = {}
    for k in objects:
        view, pixel = pick_target_pixel(ds, ds.masks_dir, k)
        seed_sel = from_pixels(model, ds.camera(view), [pixel])
        t = time.perf_counter()
        seg = editor.segment(seed_sel)
        dt = time.perf_counter() - t
        res = evaluate_selection(model, ds, ds.masks_dir, "test", k, seg)
        res.update({"iou_3d": 100 * iou(seg, labels == k), "query_s": dt, "click": {"view": view, "pixel": list(pixel)}})
        summary["segmentation"][k] = res
        seeds[k] = seg
    # edits on one object each, from its one-click segmentation; before/after renders of a test view
    cam = ds.split("test")[0]
    bg = torch.tensor(ds.background, device=dev)
    with torch.no_grad():
        save_rgb(model.render(cam, background=bg).image, out / "edits" / "before.png")
        base = model.decode()
    rm, rc, mv = objects[0], objects[1 % len(objects)], objects[2 % len(objects)]
    editor.remove(seeds[rm])
    summary["edits"]["remove"] = _leakage(model, base, labels == rm, "opacities") | {"object": rm}
    _render(model, cam, bg, out / "edits" / "remove.png")
    editor.undo()
    editor.recolor(seeds[rc], [0.1, 0.8, 0.2])
    with torch.no_grad():
        col = model.decode().colors
    summary["edits"]["recolor"] = {"object": rc, "target": [0.1, 0.8, 0.2],
                                   "mean_color_selected": col[(labels == rc).to(dev)].mean(0).tolist(),
                                   "mean_abs_change_others": float((col - base.colors)[(labels != rc).to(dev)].abs().mean())}
    _render(model, cam, bg, out / "edits" / "recolor.png")
    editor.undo()
    for _ in range(3):
        editor.move(seeds[mv], [0.0, 0.0, 0.15])
    with torch.no_grad():
        off = model.decode().offsets
    sel = (labels == mv).to(dev)
    summary["edits"]["move"] = {"object": mv, "requested_total": [0.0, 0.0, 0.45], "moves": 3,
                                "mean_offset_selected": off[sel].mean(0).tolist(),
                                "mean_offset_norm_others": float(off[~sel].norm(dim=1).mean())}
    _render(model, cam, bg, out / "edits" / "move.png")
    editor.reset()
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", summary)
    text = format_summary(summary)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    return summary


def _leakage(model, base, selected: torch.Tensor, field: str) -> dict:
    with torch.no_grad():
        now = getattr(model.decode(), field)
    d = (now - getattr(base, field)).abs()
    sel = selected.to(d.device)
    return {"mean_change_selected": float(d[sel].mean()), "mean_change_others": float(d[~sel].mean()),
            "ratio": float(d[~sel].mean() / d[sel].mean().clamp_min(1e-12))}


def _render(model, cam, bg, path: Path) -> None:
    with torch.no_grad():
        save_rgb(model.render(cam, background=bg).image, path)


def format_summary(s: dict) -> str:
    lines = [f"# structgs demo: built-in scene ({s['num_gaussians']} Gaussians, {s['seconds']:.0f} s)", "",
             f"fit: test PSNR {s['fit']['psnr_fitted']:.2f} dB (input PLY {s['fit']['psnr_input_ply']:.2f} dB)",
             f"shaping: touched {s['shaping']['fraction_touched']:.1%}, test PSNR {s['shaping']['psnr_before']:.2f} -> "
             f"{s['shaping']['psnr_after']:.2f} dB, {s['shaping']['seconds']:.0f} s", "",
             "| object | click (view, pixel) | test mIoU | test mBIoU | 3D IoU | query s |", "|---|---|---|---|---|---|"]
    for k, r in s["segmentation"].items():
        lines.append(f"| {k} | {r['click']['view']} {tuple(r['click']['pixel'])} | {r['miou']:.1f} | {r['mbiou']:.1f} | "
                     f"{r['iou_3d']:.1f} | {r['query_s']:.3f} |")
    e = s["edits"]
    lines += ["", "| edit | object | result |", "|---|---|---|",
              f"| remove | {e['remove']['object']} | opacity change others / selected = {e['remove']['ratio']:.3f} |",
              f"| recolor | {e['recolor']['object']} | selected mean colour {[round(v, 3) for v in e['recolor']['mean_color_selected']]} "
              f"(target {e['recolor']['target']}) |",
              f"| move x3 | {e['move']['object']} | selected mean offset {[round(v, 3) for v in e['move']['mean_offset_selected']]} "
              f"(requested {e['move']['requested_total']}), others {e['move']['mean_offset_norm_others']:.4f} |"]
    return "\n".join(lines)
