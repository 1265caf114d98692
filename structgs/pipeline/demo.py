"""``structgs demo``: the whole job on the built-in scene.

generate the scene -> render the input PLY -> fit the decoder -> shape it with the scene's
SAM-like masks (``sam_masks/``: merged, split and jittered per view, ids meaning nothing across
views; associated by consensus) -> segment every object from one pixel (scored against the
ground-truth masks, with voting beside it: ``structgs eval``, its report in ``report/``) ->
remove / recolor / move (x3) every object, measuring leakage and undo, and a move chained with
a recolour -> ``edits.png`` (three test views: input, selections, one
edit per column, named objects) and ``summary.md``. Finished stages are reused when re-run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from structgs.data.synthetic import SceneSpec, ensure_builtin_scene
from structgs.edit import WeightEditor
from structgs.eval.edits import MOVE_STEP, RECOLOR_TARGET, measure_chain, meets_targets
from structgs.model import SceneModel
from structgs.pipeline.evaluate import EvalConfig, evaluate_run
from structgs.scene.dataset import load_dataset
from structgs.pipeline.figures import EditPlan, edit_overview
from structgs.shaping.config import ShapeConfig
from structgs.pipeline.shape import shape_run
from structgs.training.config import FitConfig
from structgs.pipeline.fit import fit_run
from structgs.pipeline.runs import has_checkpoint, is_finished_run
from structgs.utils.device import resolve_device
from structgs.utils.errors import InputError
from structgs.utils.io import atomic_write, write_json
from structgs.utils.log import get_logger

log = get_logger("demo")


def run_demo(out: Path, seed: int = 0, device: str = "auto", fit_config: FitConfig | None = None,
             shape_config: ShapeConfig | None = None, spec: SceneSpec | None = None) -> dict:
    out = Path(out)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    spec = spec or SceneSpec(seed=seed)
    fitted, shaped = out / "fitted", out / "shaped"
    _refuse_runs_of_another_scene(out, spec)
    scene = ensure_builtin_scene(out / "scene", spec)
    fit_cfg = fit_config or FitConfig(stage2_iters=100, checkpoint_every=100)
    if not is_finished_run(fitted):  # a killed demo resumes where it stopped
        fit_run(scene, fitted, ply=scene / "gaussians.ply", config=fit_cfg, device=str(dev),
                resume=has_checkpoint(fitted, "fit"))
    if not is_finished_run(shaped):
        shape_run(fitted, scene / "sam_masks", shaped, shape_config or ShapeConfig(association="overlap"),
                  device=str(dev), resume=has_checkpoint(shaped, "shape"))
    import json

    fit_report = json.loads((fitted / "fit_report.json").read_text())
    shape_report = json.loads((shaped / "shape_report.json").read_text())
    report = evaluate_run(shaped, scene / "masks", out / "report", EvalConfig(labels=scene / "labels.npy"),
                          device=str(dev), replace=True)
    model = SceneModel.from_pretrained(shaped, dev)
    ds = load_dataset(scene, masks_dir=scene / "masks")
    labels = torch.from_numpy(np.load(scene / "labels.npy"))
    editor = WeightEditor(model)
    objects = sorted(int(k) for k in labels.unique() if k >= 2)
    names = object_names(scene)
    summary: dict = {"scene": str(scene), "num_gaussians": model.num_gaussians,
                     "fit": {k: fit_report[k] for k in ("psnr_fitted", "psnr_input_ply")},
                     "shaping": {k: shape_report[k] for k in ("fraction_touched", "psnr_before", "psnr_after", "seconds")},
                     "masks": _mask_summary(scene, shape_report), "names": {k: names.get(k, str(k)) for k in names},
                     "segmentation": {k: e["methods"] | {"click": e["prompt"]} for k, e in report["objects"].items()},
                     "edits": {k: e["methods"]["shaped"]["edits"] for k, e in report["objects"].items() if k >= 2}}
    seeds = {k: torch.from_numpy(np.load(out / "report" / "selections" / f"{k}-shaped.npy")) for k in objects}
    summary["chained"] = {k: measure_chain(lambda: WeightEditor(model), seeds[k], labels) for k in objects}
    # one picture: three test views, the clicks' selections, and an edit on each of three objects
    plan = EditPlan(remove=objects[0], recolor=objects[1 % len(objects)], move=objects[2 % len(objects)],
                    rgb=RECOLOR_TARGET, step=MOVE_STEP)
    figure = edit_overview(editor, ds.split("test")[:3], torch.tensor(ds.background, device=dev), seeds,
                           summary["names"], plan, out / "edits.png")
    summary["files"] = {"picture": str(figure), "summary": str(out / "summary.md"), "report": str(out / "report"),
                        "scene": str(scene),
                        "fitted run": str(fitted), "shaped run": str(shaped)}
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", summary)
    text = format_summary(summary)
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(text + "\n"))
    print(text)
    return summary


def _refuse_runs_of_another_scene(out: Path, spec: SceneSpec) -> None:
    """Finished stages are reused only on the scene they were made from: a demo directory whose
    runs belong to a scene of another spec (e.g. another --seed) is refused, never overwritten."""
    import json

    meta = out / "scene" / "scene.json"
    if not meta.is_file() or not any((out / r).exists() for r in ("fitted", "shaped")):
        return
    try:
        written = json.loads(meta.read_text()).get("spec")
    except json.JSONDecodeError:
        written = None
    if written != json.loads(json.dumps(spec.__dict__)):
        raise InputError(f"{out} holds the runs of another built-in scene ({meta}: seed {(written or {}).get('seed')}, "
                         f"asked for seed {spec.seed}); give another --out")


def _mask_summary(scene: Path, shape_report: dict) -> dict:
    """What the shaping was given (SAM-like masks), how noisy it found them, and the truth."""
    import json

    views = json.loads((scene / "sam_masks" / "noise.json").read_text())["views"]
    train = [v for k, v in views.items() if k.startswith("train/")]
    lift, noise = shape_report["lifting"], shape_report["lifting"].get("noise", {})
    return {"masks": "sam_masks", "association": shape_report["config"]["association"],
            "objects": lift.get("objects", lift.get("num_ids")), "label_accuracy": lift.get("accuracy_filled"),
            "estimated_merges_per_view": noise.get("merges_per_view"),
            "estimated_splits_per_view": noise.get("splits_per_view"),
            "true_merges_per_view": sum(v["merged"] for v in train) / len(train),
            "true_splits_per_view": sum(v["split"] for v in train) / len(train),
            "confidence_mean": noise.get("confidence_mean")}


def object_names(scene: Path) -> dict[int, str]:
    """Object id -> name from the built-in scene's scene.json ("box_1" -> "box")."""
    import json

    objects = json.loads((Path(scene) / "scene.json").read_text())["objects"]
    return {int(o["id"]): o["name"].rsplit("_", 1)[0] if o["name"].rsplit("_", 1)[-1].isdigit() else o["name"]
            for o in objects}


def format_summary(s: dict) -> str:
    lines = [f"# structgs demo: built-in scene ({s['num_gaussians']} Gaussians, {s['seconds']:.0f} s)", "",
             f"fit: test PSNR {s['fit']['psnr_fitted']:.2f} dB (input PLY {s['fit']['psnr_input_ply']:.2f} dB)",
             f"shaping: touched {s['shaping']['fraction_touched']:.1%}, test PSNR {s['shaping']['psnr_before']:.2f} -> "
             f"{s['shaping']['psnr_after']:.2f} dB, {s['shaping']['seconds']:.0f} s",
             _format_masks(s["masks"]), "", format_tables(s)]
    return "\n".join(lines)


def format_tables(s: dict) -> str:
    """The segmentation (``structgs eval``'s, per method) and edit tables of the demo."""
    names = s.get("names", {})
    lines = ["Segmentation from one click per object (test views; 3D IoU per Gaussian against the labels):", "",
             "| object | click (view, pixel) | shaped mIoU / mBIoU / 3D IoU | voting mIoU / mBIoU / 3D IoU | "
             "query s: shaped / voting |", "|---|---|---|---|---|"]
    for k, r in s["segmentation"].items():
        cells = [f"{r[m]['miou']:.1f} / {r[m]['mbiou']:.1f} / {r[m]['iou_3d']:.1f}" for m in ("shaped", "voting")]
        lines.append(f"| {names.get(k, k)} | {r['click']['view']} {tuple(r['click']['pixel'])} | {cells[0]} | {cells[1]} | "
                     f"{r['shaped']['query_s']:.3f} / {r['voting']['query_s']:.1f} |")
    lines += ["", "| object | removal: others / selected | recolour error | move x3: error / others / spread (of request) | undo exact |",
              "|---|---|---|---|---|"]
    for k, e in s["edits"].items():
        ok = meets_targets(e)
        lines.append(f"| {names.get(k, k)} | {e['remove']['ratio']:.3f} {_mark(ok['remove'])} | {e['recolor']['error']:.3f} {_mark(ok['recolor'])} | "
                     f"{e['move']['error']:.4f} / {e['move']['others']:.4f} / {e['move']['spread']:.3f} {_mark(ok['move'])} | "
                     f"{_mark(ok['restore'])} |")
    lines += ["", "targets: removal <= 0.02, recolour <= 0.05, move error <= 0.05 and others < 0.01, "
                  "undo / redo / reset bit-exact"]
    if s.get("chained"):
        lines += ["", "Chained as `structgs edit` chains runs: move x1, then recolour the moved object "
                      "(Gaussians, not means; tinted = a colour channel changed > 0.05):", "",
                  "| object | left behind by the move | others moved > 10 % | ground tinted | worst other object tinted |",
                  "|---|---|---|---|---|"]
        for k, c in s["chained"].items():
            others = [v for j, v in c["tinted"].items() if int(j) != 1]
            lines.append(f"| {names.get(k, k)} | {c['left_behind']:.2%} | {c['others_moved']:.2%} | "
                         f"{c['tinted'].get(1, 0.0):.2%} | {max(others, default=0.0):.2%} |")
    return "\n".join(lines)


def _format_masks(m: dict) -> str:
    acc = f"{m['label_accuracy']:.1%}" if m.get("label_accuracy") is not None else "n/a"
    return (f"masks: SAM-like ({m['masks']}/, ids per view), association {m['association']}: {m['objects']} objects, "
            f"labels {acc} right; estimated {m['estimated_merges_per_view']:.2f} merges / "
            f"{m['estimated_splits_per_view']:.2f} splits per view (truth {m['true_merges_per_view']:.2f} / "
            f"{m['true_splits_per_view']:.2f}), mean label confidence {m['confidence_mean']:.2f}")


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"
