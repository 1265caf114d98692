"""``structgs eval``: the field's segmentation protocol on every object, in one command.

For every object of the ground-truth masks (ids > 0 consistent across views): one prompt (a
pixel of a training view), each method's 3D selection from it, and

* test mIoU and mBIoU (LERF-Mask protocol: the selection rendered as a mask, threshold 0.5;
  boundary = mask minus its erosion by 2 % of the image diagonal), in percent;
* 3D IoU per Gaussian where ground-truth labels exist (``--labels``, or the dataset's
  ``labels.npy`` as the built-in scene has), in percent;
* the query time (shaped: from the clicked Gaussian, which takes ``pick_s`` to find; voting:
  from the masks), and for ``shaped`` the edit leakage of ``structgs.eval.edits``;
* the run's test PSNR.

Prompts default to the deepest pixel of the object in the first training view where that
pixel lies at least :data:`MIN_CLICK_DEPTH` pixels inside it (a click a user could make; the
view where it lies deepest otherwise). Voting methods vote on ``--vote-masks`` (default: the
ground-truth masks of the training views) for the prompt's id there.

Writes ``OUT/report.json`` (per object, keyed by method), ``OUT/report.md``, ``OUT/report.png``
(per object: the click, then each method's selection highlighted on a test view) and each
selection as ``OUT/selections/<id>-<method>.npy``; the folder appears whole or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from structgs.edit import make_editor
from structgs.edit.segmentation import SegmentationQuery, segmentation
from structgs.eval.edits import measure_edits, meets_targets
from structgs.eval.metrics import iou
from structgs.pipeline.edit_ops import ALL_METHODS, SelectionSpec, evaluate_selection, pick_target_pixel, select
from structgs.pipeline.figures import grid_png, highlighted, render_image
from structgs.pipeline.runs import Run
from structgs.utils.errors import InputError, MissingFileError
from structgs.utils.io import ensure_writable_dir, replace_dir_atomically, save_npy, write_json
from structgs.utils.log import get_logger
from structgs.utils.metrics import psnr

log = get_logger("eval")
MIN_CLICK_DEPTH = 3
"""Pixels a default prompt lies inside its object at least (when some training view allows)."""


@dataclass(frozen=True)
class EvalConfig:
    """What ``structgs eval`` measures."""

    split: str = "test"
    """Views the selections are scored on."""
    methods: tuple[str, ...] = ("shaped", "voting")
    """Segmentation methods to compare (shaped, voting, projection, binary)."""
    prompts: Path | None = None
    """JSON {"<id>": {"view": NAME, "pixel": [X, Y]}}: the click per object (default: see above)."""
    labels: Path | None = None
    """(N,) ground-truth object id per Gaussian (.npy) for 3D IoU (default: DATA/labels.npy if present)."""
    vote_masks: Path | None = None
    """Id masks voting votes on (default: the ground-truth masks)."""
    edits: bool = True
    """Measure shaped edit leakage per object (removal, recolour, three moves; each undone)."""
    figure_views: int = 1
    """Test views per object in report.png."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown or not self.methods:
            raise InputError(f"--methods: unknown {unknown or 'none given'} (choose from {', '.join(ALL_METHODS)})")


def default_prompt(ds, masks_dir: Path, target: int) -> dict | None:
    """The deepest pixel of ``target`` in the first training view where it lies >=
    MIN_CLICK_DEPTH px inside (else the deepest anywhere); None if no training view shows it."""
    try:
        view, (x, y) = pick_target_pixel(ds, masks_dir, target, good_depth=MIN_CLICK_DEPTH)
    except InputError:
        return None
    return {"view": view, "pixel": [x, y]}


def _read_prompts(path: Path, objects: list[int], ds) -> dict[int, dict]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{path}: prompts file does not exist") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    prompts = {}
    for key, p in raw.items():
        if not (isinstance(p, dict) and isinstance(p.get("view"), str) and isinstance(p.get("pixel"), list)
                and len(p["pixel"]) == 2 and all(isinstance(v, int) for v in p["pixel"])):
            raise InputError(f'{path}: entry {key!r} must be {{"view": NAME, "pixel": [X, Y]}}, got {p!r}')
        cam = ds.camera(p["view"])  # an unknown view fails here, naming it
        x, y = p["pixel"]
        if not (0 <= x < cam.width and 0 <= y < cam.height):
            raise InputError(f"{path}: pixel {p['pixel']} of object {key} is outside view {p['view']} "
                             f"({cam.width}x{cam.height})")
        if not str(key).isdigit() or int(key) not in objects:
            raise InputError(f"{path}: {key!r} is not an object id of the masks ({objects})")
        prompts[int(key)] = {"view": p["view"], "pixel": [x, y]}
    return prompts


def _objects(split_masks: dict[str, torch.Tensor]) -> list[int]:
    ids: set[int] = set()
    for m in split_masks.values():
        ids |= set(m.unique().tolist())
    return sorted(i for i in ids if i > 0)


def _labels(config: EvalConfig, ds_root: Path | None, n: int) -> torch.Tensor | None:
    """--labels (checked), else the dataset's labels.npy when it matches the run, else None."""
    path = config.labels
    if path is None:
        path = ds_root / "labels.npy" if ds_root is not None else None
        if path is None or not path.is_file():
            return None
    elif not Path(path).is_file():
        raise MissingFileError(f"--labels {path}: no such file")
    labels = np.load(path, allow_pickle=False)
    if labels.shape != (n,):
        if config.labels is None:  # e.g. a pruned run: its Gaussians no longer match the scene's labels
            log.warning("%s holds %s labels, the run %d Gaussians: no 3D IoU", path, labels.shape, n)
            return None
        raise InputError(f"--labels {path}: expected ({n},) labels (one per Gaussian of the run), got {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def evaluate_run(run: Path, masks: Path, out: Path, config: EvalConfig = EvalConfig(), data: Path | None = None,
                 device: str = "auto", replace: bool = False) -> dict:
    """Evaluate ``run`` against the ground-truth id ``masks``; write the report to ``out``
    (``replace``: an existing report there is replaced, as the demo re-runs it; else refused)."""
    out = Path(out)
    if not replace and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty folder; reports are never overwritten")
    if Path(run).resolve() in out.resolve().parents:
        raise InputError(f"--out {out} lies inside the run {run}; write reports outside it")
    ensure_writable_dir(out.parent, "--out")
    opened = Run.open(run, data, device, needs_shaping="shaped" in config.methods)
    model, ds = opened.model, opened.dataset
    masks = Path(masks)
    if not masks.is_dir():
        raise MissingFileError(f"--masks {masks}: no such folder")
    for cam in ds.split("train") + ds.split(config.split):
        if not ds.mask_path(cam, masks).is_file():
            raise MissingFileError(f"--masks {masks}: no mask for view {cam.name} ({ds.mask_path(cam, masks)})")
    split_masks = {c.name: ds.mask(c, masks) for c in ds.split(config.split)}  # read once
    objects = _objects(split_masks)
    if not objects:
        raise InputError(f"--masks {masks}: no object (id > 0) in any {config.split} view")
    prompts = _read_prompts(config.prompts, objects, ds) if config.prompts is not None else {}
    root = Path(data) if data is not None else (Path(model.scene.data) if model.scene.data else None)
    labels = _labels(config, root, model.num_gaussians)
    vote_masks = config.vote_masks or masks

    bg = torch.tensor(ds.background, dtype=torch.float32, device=model.device)
    with torch.no_grad():
        psnrs = [psnr(out.image, ds.image(c).to(model.device))
                 for c, out in model.render_views(ds.split(config.split), background=bg)]
    report: dict = {"run": str(Path(run).resolve()), "masks": str(masks.resolve()), "split": config.split,
                    "psnr": sum(psnrs) / len(psnrs), "methods": list(config.methods), "objects": {}}
    selections: dict[tuple[int, str], torch.Tensor] = {}
    for k in tqdm(objects, desc="eval: objects", leave=False):
        prompt = prompts.get(k) or default_prompt(ds, masks, k)
        if prompt is None:
            log.warning("object %d shows in no training view: skipped", k)
            continue
        entry = {"prompt": prompt, "methods": {}}
        spec = SelectionSpec(view=prompt["view"], pixels=[tuple(prompt["pixel"])])
        t0 = time.perf_counter()
        seed = spec.seed(model, ds)  # the Gaussian under the click
        entry["pick_s"] = time.perf_counter() - t0
        for method in config.methods:
            t0 = time.perf_counter()  # shaped: from the picked Gaussian; voting: from the masks
            if method == "shaped":
                sel = segmentation("shaped")(model, SegmentationQuery(seed=seed))
            else:
                sel = select(model, ds, spec, method, vote_masks, k)
            dt = time.perf_counter() - t0
            res = evaluate_selection(model, ds, masks, config.split, k, sel)
            res.update(query_s=dt, selected=int(sel.sum()))
            if labels is not None:
                res["iou_3d"] = 100 * iou(sel, labels == k)
            if method == "shaped" and config.edits:
                edits = measure_edits(make_editor(model, "shaped"), sel)
                res["edits"] = {**edits, "targets_met": meets_targets(edits)}
            entry["methods"][method] = res
            selections[k, method] = sel
        report["objects"][k] = entry

    def write(tmp: Path) -> None:
        for (k, method), sel in selections.items():
            save_npy(tmp / "selections" / f"{k}-{method}.npy", sel.numpy())
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(format_report(report) + "\n")
        _figure(model, ds, split_masks, report, selections, config, bg, tmp / "report.png")

    replace_dir_atomically(out, write)
    log.info("eval: %d objects, %s -> %s", len(report["objects"]), ", ".join(config.methods), out)
    return report


def _figure(model, ds, split_masks: dict[str, torch.Tensor], report: dict, selections, config: EvalConfig, bg,
            path: Path) -> None:
    """Per object (rows): the click on its training view, then each method's selection
    highlighted (magenta, the rest faded) on the test view where the object is largest."""
    rows, columns = [], {"click": []} | {m: [] for m in config.methods}
    for k, entry in report["objects"].items():
        cam = ds.camera(entry["prompt"]["view"]).scaled(0.5)
        x, y = (2 * v for v in entry["prompt"]["pixel"])
        click = render_image(model, cam, bg).clone()
        click[max(0, y - 4):y + 5, max(0, x - 1):x + 2] = torch.tensor([1.0, 0.0, 0.0])
        click[max(0, y - 1):y + 2, max(0, x - 4):x + 5] = torch.tensor([1.0, 0.0, 0.0])
        columns["click"].append(click)
        test = max(ds.split(config.split), key=lambda c: int((split_masks[c.name] == k).sum()))
        for m in config.methods:
            columns[m].append(highlighted(model, test.scaled(0.5), bg, selections[k, m]))
        figures = ", ".join(f"{m} {r['miou']:.1f}" for m, r in entry["methods"].items())
        rows.append(f"object {k}: mIoU {figures}")
    titles = {"click": "the click (training view)"} | {m: f"{m} (test view)" for m in config.methods}
    grid_png([(titles[c], tiles) for c, tiles in columns.items()], path, row_titles=rows)


def format_report(report: dict) -> str:
    methods = report["methods"]
    has_3d = any("iou_3d" in r for e in report["objects"].values() for r in e["methods"].values())
    head = ["object", "click"] + [f"{m} mIoU / mBIoU" + (" / 3D IoU" if has_3d else "") for m in methods]
    head += [f"{m} query s" for m in methods]
    lines = [f"# structgs eval: {report['run']}", "",
             f"{report['split']} PSNR {report['psnr']:.2f} dB; masks {report['masks']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, e in report["objects"].items():
        cells = [str(k), f"{e['prompt']['view']} {tuple(e['prompt']['pixel'])}"]
        for m in methods:
            r = e["methods"][m]
            cells.append(f"{r['miou']:.1f} / {r['mbiou']:.1f}" + (f" / {r['iou_3d']:.1f}" if has_3d else ""))
        cells += [f"{e['methods'][m]['query_s']:.3f}" for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    edits = {k: e["methods"]["shaped"]["edits"] for k, e in report["objects"].items()
             if "edits" in e["methods"].get("shaped", {})}
    if edits:
        lines += ["", "| object | removal leak | recolour error | move error / others | targets met |", "|---|---|---|---|---|"]
        for k, r in edits.items():
            lines.append(f"| {k} | {r['remove']['ratio']:.3f} | {r['recolor']['error']:.3f} | {r['move']['error']:.4f} / "
                         f"{r['move']['others']:.4f} | {'yes' if all(r['targets_met'].values()) else 'no'} |")
    return "\n".join(lines)
