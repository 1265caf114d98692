"""Segment / edit / prune / compare on a run directory (what the CLI commands call)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from structgs.edit import make_editor, from_file, from_mask, from_pixels
from structgs.edit.editor import removal_marks
from structgs.edit.selection import SelectionExtent, load_mask_image, selection_extent
from structgs.edit.voting import METHODS as VOTING_METHODS
from structgs.edit.segmentation import SegmentationQuery, segmentation
from structgs.edit.voting import keep_gaussians, prunable
from structgs.eval.metrics import boundary_iou, iou
from structgs.pipeline.render_views import render_selection_mask
from structgs.pipeline.runs import Run, commit_run, refuse_new_run_over
from structgs.utils.io import ensure_writable_dir, refuse_overwrite, save_npy
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError, MissingFileError

log = get_logger("edit")
ALL_METHODS = ("shaped", *VOTING_METHODS)


class SelectionSpec:
    """What the user pointed at: Gaussian ids, pixels of a view, a 2D mask of a view, or a text.

    With ``sources`` (SAM 2 weights, see pipeline.make_masks.MaskSources) a click or a text is
    first turned into a 2D mask of its view by SAM 2 (text: Grounding DINO box -> SAM 2).
    """

    def __init__(self, gaussians: Path | None = None, view: str | None = None,
                 pixels: list[tuple[int, int]] | None = None, mask: Path | None = None, text: str | None = None,
                 sources=None):
        given = sum(x is not None for x in (gaussians, pixels or None, mask, text))
        if given != 1:
            raise InputError("give exactly one of --gaussians FILE.npy, --view NAME --pixel X Y, "
                             "--view NAME --mask FILE.png, --text PROMPT")
        if (pixels or mask is not None) and view is None:
            raise InputError("--pixel and --mask need --view NAME")
        if text is not None and sources is None:
            raise InputError("--text needs --weights SAM2_DIR and --detector-weights GROUNDING_DINO_DIR")
        self.gaussians, self.view, self.pixels, self.mask = gaussians, view, pixels or None, mask
        self.text, self.sources = text, sources

    def seed(self, model, ds) -> torch.Tensor:
        if self.gaussians is not None:
            return from_file(self.gaussians, model.num_gaussians)
        if self.text is not None or (self.pixels is not None and self.sources is not None):
            from structgs.pipeline.make_masks import prompt_on_dataset

            view, mask2d, prompt = prompt_on_dataset(self.sources, ds, self.view, self.pixels, self.text)
            log.info("prompt %s -> %d pixels on view %s", prompt, int(mask2d.sum()), view)
            return from_mask(model, ds.camera(view), mask2d)
        cam = ds.camera(self.view)
        if self.pixels is not None:
            return from_pixels(model, cam, self.pixels)
        return from_mask(model, cam, load_mask_image(self.mask))


def target_masks(ds, masks_dir: Path, cameras, target: int) -> list[torch.Tensor]:
    return [ds.mask(c, masks_dir) == target for c in cameras]


def resolve_target(ds, masks_dir: Path | None, target: int | None, spec: SelectionSpec | None) -> int:
    """The target id for voting: --target, or the id under the prompt pixel in the user's masks."""
    if masks_dir is None:
        raise InputError("voting methods need --masks DIR (id masks of the training views)")
    if target is not None:
        return int(target)
    if spec is None or spec.pixels is None:
        raise InputError("voting needs --target ID, or a one-view prompt --view NAME --pixel X Y propagated by --masks")
    cam = ds.camera(spec.view)
    m = ds.mask(cam, masks_dir)
    x, y = spec.pixels[0]
    tid = int(m[y, x])
    if tid == 0:
        raise InputError(f"pixel ({x}, {y}) of view {spec.view} has id 0 (no object) in {masks_dir}")
    return tid


def select(model, ds, spec: SelectionSpec | None, method: str = "shaped", masks_dir: Path | None = None,
           target: int | None = None, threshold: float | None = None, expand: bool | None = None) -> torch.Tensor:
    """(N,) bool selection by any method; shaped expands the seed to its object(s) by Jacobian cosine."""
    if method not in ALL_METHODS:
        raise InputError(f"unknown method {method!r} ({', '.join(ALL_METHODS)})")
    if method == "shaped":
        if spec is None:
            raise InputError("shaped segmentation needs a selection (--gaussians, --view/--pixel or --view/--mask)")
        seed = spec.seed(model, ds)
        if expand is False:
            return seed
        return segmentation(method, threshold)(model, SegmentationQuery(seed=seed))
    tid = resolve_target(ds, masks_dir, target, spec)
    cams = [c for c in ds.split("train") if ds.mask_path(c, masks_dir).is_file()]
    if not cams:
        raise MissingFileError(f"{masks_dir}: no masks for the training views")
    query = SegmentationQuery(cameras=tuple(cams), target_masks=tuple(target_masks(ds, masks_dir, cams, tid)))
    sel = segmentation(method, threshold, progress=True)(model, query)
    if not sel.any():
        raise InputError(f"{method}: no Gaussian was voted into target {tid}")
    return sel


def load(run: Path, data: Path | None = None, device: str = "auto", needs_shaping: bool = False):
    """The run's model and dataset (see ``Run.open``)."""
    opened = Run.open(run, data, device, needs_shaping=needs_shaping)
    return opened.model, opened.dataset


def segment_command(run: Path, out: Path, spec: SelectionSpec | None, method: str, masks: Path | None,
                    target: int | None, threshold: float | None, data: Path | None, device: str) -> SelectionExtent:
    out_r = Path(out).resolve()
    if Path(run).resolve() in out_r.parents:
        raise InputError(f"--out {out} lies inside the run {run}; write selections outside it")
    refuse_overwrite(out, [spec.gaussians if spec is not None else None, masks], "--out")
    if Path(out).is_dir():
        raise InputError(f"--out {out} is a directory; give a .npy file path")
    ensure_writable_dir(Path(out).parent, "--out")
    model, ds = load(run, data, device, needs_shaping=method == "shaped")
    sel = select(model, ds, spec, method, masks, target, threshold)
    save_npy(out, sel.numpy())
    with torch.no_grad():
        extent = selection_extent(model.decode_means(), sel)
    log.info("%s: selected %s -> %s", method, extent.describe(), out)
    return extent


def edit_command(run: Path, out: Path, op: str, spec: SelectionSpec | None, method: str, masks: Path | None,
                 target: int | None, rgb, translate, data: Path | None, device: str, expand: bool | None = None) -> dict:
    refuse_new_run_over(out, run, "edit --out")
    model, ds = load(run, data, device, needs_shaping=method == "shaped")
    if expand is None:
        expand = spec is None or spec.gaussians is None  # clicks/masks expand to the object, ids are taken as given
    sel = select(model, ds, spec, method, masks, target, expand=expand)
    editor = make_editor(model, method, **({"progress": True} if method == "shaped" else {}))
    with torch.no_grad():
        opacity_before, extent = model.decode_opacities(), selection_extent(model.decode_means(), sel)
    log.info("%s: %s", op, extent.describe())
    if op == "remove":
        rec = editor.remove(sel)
    elif op == "recolor":
        if rgb is None:
            raise InputError("--op recolor needs --rgb R G B")
        rec = editor.recolor(sel, rgb)
    elif op == "move":
        if translate is None:
            raise InputError("--op move needs --translate DX DY DZ")
        rec = editor.move(sel, translate)
    else:
        raise InputError(f"unknown --op {op!r} (remove, recolor, move)")
    model.removed.copy_(removal_marks(model, opacity_before))  # exports leave these out
    history = list(model.meta.get("edits", []))
    history.append({"op": op, "method": method, "selected": int(sel.sum()), "rgb": rgb, "translate": translate,
                    "info": {k: v for k, v in rec.info.items() if k in ("achieved", "targets")}})
    model.meta["edits"] = history
    commit_run(out, model, {"last_selection.npy": lambda p: save_npy(p, sel.numpy())})
    log.info("%s %d Gaussians (%s) -> %s", op, int(sel.sum()), method, out)
    return {**history[-1], "extent": extent}


def prune_command(run: Path, out: Path, data: Path | None, device: str) -> dict:
    refuse_new_run_over(out, run, "prune --out")
    model, ds = load(run, data, device)
    drop = prunable(model, ds.split("train"))
    pruned = keep_gaussians(model, ~drop)
    pruned.meta["pruned_from"] = {"run": str(Path(run).resolve()), "kept": int((~drop).sum()), "dropped": int(drop.sum())}
    commit_run(out, pruned)
    log.info("pruned %d of %d Gaussians (zero contribution in every training view)", int(drop.sum()), drop.numel())
    return pruned.meta["pruned_from"]


def pick_target_pixel(ds, masks_dir: Path, target: int, good_depth: float | None = None) -> tuple[str, tuple[int, int]]:
    """A pixel well inside the target (a user's click): its deepest pixel in the training view
    where it lies deepest, or with ``good_depth`` in the first training view where that pixel
    lies at least ``good_depth`` pixels inside (else the deepest anywhere)."""
    from structgs.masks.base import boundary_depth

    best = None
    for cam in ds.split("train"):
        m = ds.mask(cam, masks_dir) == target
        if not m.any():
            continue
        depth = boundary_depth(m)
        y, x = divmod(int(depth.argmax()), m.shape[1])
        if good_depth is not None and float(depth.max()) >= good_depth:
            return cam.name, (x, y)
        if best is None or depth.max() > best[0]:
            best = (float(depth.max()), cam.name, (x, y))
    if best is None:
        raise InputError(f"target {target} appears in no training mask of {masks_dir}")
    return best[1], best[2]


@torch.no_grad()
def evaluate_selection(model, ds, masks_dir: Path, split: str, target: int, selection: torch.Tensor) -> dict:
    ious, bious = [], []
    geometry = model.geometry_by_view()
    for cam in ds.split(split):
        gt = ds.mask(cam, masks_dir) == target
        if gt.sum() == 0:
            continue
        s = geometry(cam)
        pred = render_selection_mask(s.means, s.quats, s.scales, s.opacities, selection.to(model.device), cam).cpu()
        ious.append(iou(pred, gt))
        bious.append(boundary_iou(pred, gt))
    if not ious:
        raise InputError(f"target {target} is visible in no {split} view")
    return {"miou": 100 * sum(ious) / len(ious), "mbiou": 100 * sum(bious) / len(bious), "views": len(ious)}


def compare_command(run: Path, masks: Path, split: str, target: int | None, spec: SelectionSpec | None,
                    data: Path | None, device: str, methods=ALL_METHODS) -> dict:
    model, ds = load(run, data, device, needs_shaping="shaped" in methods)
    if target is None:
        target = resolve_target(ds, masks, None, spec)
    if spec is None:
        view, pixel = pick_target_pixel(ds, masks, target)
        spec = SelectionSpec(view=view, pixels=[pixel])
    results = {"target": target, "prompt": {"view": spec.view, "pixels": spec.pixels}, "methods": {}}
    for method in tqdm(methods, desc="compare", leave=False):
        t0 = time.perf_counter()
        sel = select(model, ds, spec, method, masks, target)
        dt = time.perf_counter() - t0
        res = evaluate_selection(model, ds, masks, split, target, sel)
        res.update({"query_s": dt, "selected": int(sel.sum())})
        results["methods"][method] = res
    return results


def format_comparison(results: dict) -> str:
    lines = [f"target {results['target']} (shaped prompt: view {results['prompt']['view']} pixel {results['prompt']['pixels']})",
             f"{'method':<11} {'mIoU':>6} {'mBIoU':>6} {'query s':>8} {'selected':>9}"]
    for m, r in results["methods"].items():
        lines.append(f"{m:<11} {r['miou']:6.1f} {r['mbiou']:6.1f} {r['query_s']:8.3f} {r['selected']:9d}")
    return "\n".join(lines)
