"""``structgs affordance`` and ``structgs features``: affordance labels from a few annotated
example images, and DINOv2 features lifted onto the Gaussians (structgs.edit.affordance).

Examples are a folder with ``examples.json``::

    {"labels": {"1": "grasp", "2": "contain"},
     "pairs": [["mug.jpg", "mug_ids.png"], ["pan.png", "pan_ids.png"]]}

each pair an RGB image and an id PNG of the same size (0 = no label, ids named in "labels");
the images need not show the scene. The scene's training views are rendered from the run, the
renders' patches labelled by kNN against the examples' patches, and the labels carried to the
Gaussians by voting (or by the lifted features). ``--masks-out`` also renders the 3D labels
into one id mask per training view, so ``structgs shape --masks`` can shape the decoder by
affordance (a part, such as a handle, then selects and edits as one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from structgs.edit.affordance import (ExampleBank, classify, example_bank, label_patches, lift_features,
                                      upsample_labels, vote_labels)
from structgs.masks.dino import Dinov2Features, PatchFeatures
from structgs.pipeline.runs import Run
from structgs.data.synthetic import render_labels
from structgs.scene.images import load_id_mask, load_rgb, save_id_mask
from structgs.utils.errors import InputError, MissingFileError
from structgs.utils.io import ensure_writable_dir, refuse_overwrite, save_npy, write_json
from structgs.utils.log import get_logger

log = get_logger("affordance")
MODES = ("voting", "lifted")


@dataclass(frozen=True)
class Examples:
    """The annotated examples: label names by id, and (image, id map) pairs."""

    names: dict[int, str]
    images: list[torch.Tensor]
    label_maps: list[torch.Tensor]


def read_examples(folder: Path) -> Examples:
    """Read and check ``folder/examples.json`` and its pairs (errors name the file)."""
    folder = Path(folder)
    meta = folder / "examples.json"
    if not meta.is_file():
        raise MissingFileError(f"--examples {folder}: no examples.json (labels and image / id-PNG pairs)")
    try:
        spec = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{meta}: invalid JSON ({e})") from None
    labels, pairs = spec.get("labels"), spec.get("pairs")
    if not isinstance(labels, dict) or not labels or not all(str(k).isdigit() and int(k) > 0 for k in labels):
        raise InputError(f'{meta}: "labels" must map ids > 0 to names, e.g. {{"1": "grasp"}}, got {labels!r}')
    if not isinstance(pairs, list) or not pairs or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise InputError(f'{meta}: "pairs" must list [image, id PNG] pairs, got {pairs!r}')
    names = {int(k): str(v) for k, v in labels.items()}
    images, maps = [], []
    for image_name, ids_name in pairs:
        image_path, ids_path = folder / image_name, folder / ids_name
        if not image_path.is_file():
            raise MissingFileError(f"{meta}: example image {image_path} does not exist")
        image = load_rgb(image_path, (1.0, 1.0, 1.0))
        ids = load_id_mask(ids_path, (int(image.shape[1]), int(image.shape[0])))
        unknown = sorted(set(ids.unique().tolist()) - set(names) - {0})
        if unknown:
            raise InputError(f"{ids_path}: ids {unknown} are not named in {meta}")
        images.append(image)
        maps.append(ids)
    return Examples(names, images, maps)


def _check_out(out: Path, run: Path, inputs: list[Path | None]) -> None:
    """--out: a .npy path outside the run, neither it nor its .json beside it an input."""
    if Path(out).suffix != ".npy":
        raise InputError(f"--out {out}: give a .npy path")
    if Path(run).resolve() in Path(out).resolve().parents:
        raise InputError(f"--out {out} lies inside the run {run}; write it outside")
    refuse_overwrite(out, inputs, "--out")
    refuse_overwrite(Path(out).with_suffix(".json"), inputs, "--out's .json")
    ensure_writable_dir(Path(out).parent, "--out")


def _render_views(run: Run, split: str):
    cams = run.dataset.split(split)
    bg = torch.tensor(run.dataset.background, dtype=torch.float32, device=run.model.device)
    with torch.no_grad():
        for cam, rendered in run.model.render_views(cams, background=bg):
            yield cam, rendered.image.clamp(0, 1).cpu()


def patch_label_maps(run: Run, extractor: PatchFeatures, bank: ExampleBank, k: int, split: str = "train"):
    """(cameras, (H, W) label map per view): each render's patches labelled against the examples."""
    cams, maps = [], []
    for cam, image in tqdm(_render_views(run, split), total=len(run.dataset.split(split)),
                           desc="labelling rendered patches", leave=False):
        cams.append(cam)
        maps.append(upsample_labels(label_patches(extractor(image), bank, k), cam.height, cam.width))
    return cams, maps


def feature_grids(run: Run, extractor: PatchFeatures, split: str = "train"):
    """(cameras, (h, w, C) feature grid per rendered view)."""
    cams, grids = [], []
    for cam, image in tqdm(_render_views(run, split), total=len(run.dataset.split(split)),
                           desc="features of rendered views", leave=False):
        cams.append(cam)
        grids.append(extractor(image))
    return cams, grids


@torch.no_grad()
def render_label_masks(model, cameras, labels: torch.Tensor, out: Path) -> Path:
    """One id mask per view (``out/<view name>.png``) from per-Gaussian labels: the label with
    the largest blended weight, 0 where the alpha is under 0.5 (as the built-in scene's masks)."""
    n = int(labels.max()) + 1
    geometry = model.geometry_by_view()
    for cam in cameras:
        ids = render_labels(geometry(cam), labels.long().to(model.device), cam, n)
        save_id_mask(ids.cpu(), Path(out) / f"{cam.name}.png")
    return Path(out)


def affordance_run(run: Path, examples: Path, out: Path, weights: Path | None = None, *, mode: str = "voting",
                   k: int = 5, masks_out: Path | None = None, extractor: PatchFeatures | None = None,
                   data: Path | None = None, device: str = "auto") -> dict:
    """Label every Gaussian of ``run`` with an affordance of ``examples``; write ``out`` (.npy,
    int64 per Gaussian, 0 = none) and ``out`` with .json (names and counts). ``extractor``
    replaces the DINOv2 of ``weights`` (tests, other backbones)."""
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if k < 1:
        raise InputError(f"--k must be >= 1, got {k}")
    _check_out(out, run, [Path(examples) / "examples.json"])
    ex = read_examples(examples)
    if masks_out is not None and Path(masks_out).exists() and any(Path(masks_out).iterdir()):
        raise InputError(f"--masks-out {masks_out} exists and is not empty; masks are never overwritten")
    opened = Run.open(run, data, device)
    if extractor is None:
        if weights is None:
            raise InputError("--weights DINOV2_DIR is needed (a local facebook/dinov2-* checkpoint)")
        extractor = Dinov2Features.from_pretrained(weights, opened.model.device)
    bank = example_bank([extractor(im) for im in ex.images], ex.label_maps)
    n_labels = max(ex.names) + 1
    if mode == "voting":
        cams, maps = patch_label_maps(opened, extractor, bank, k)
        labels = vote_labels(opened.model, cams, maps, n_labels)
    else:
        cams, grids = feature_grids(opened, extractor)
        labels = classify(lift_features(opened.model, cams, grids), bank, k)
    counts = {ex.names.get(i, "none"): int((labels == i).sum()) for i in range(n_labels)}
    save_npy(out, labels.numpy())
    write_json(Path(out).with_suffix(".json"), {"mode": mode, "k": k, "labels": {str(i): n for i, n in ex.names.items()},
                                                "counts": counts})
    if masks_out is not None:
        render_label_masks(opened.model, cams, labels, masks_out)
    log.info("affordance (%s): %s -> %s", mode, counts, out)
    return {"labels": labels, "names": ex.names, "counts": counts}


def features_run(run: Path, out: Path, weights: Path | None = None, *, extractor: PatchFeatures | None = None,
                 data: Path | None = None, device: str = "auto") -> torch.Tensor:
    """Lift the rendered training views' features onto the Gaussians; write (N, C) float16 ``out``."""
    _check_out(out, run, [])
    opened = Run.open(run, data, device)
    if extractor is None:
        if weights is None:
            raise InputError("--weights DINOV2_DIR is needed (a local facebook/dinov2-* checkpoint)")
        extractor = Dinov2Features.from_pretrained(weights, opened.model.device)
    cams, grids = feature_grids(opened, extractor)
    feats = lift_features(opened.model, cams, grids)
    save_npy(out, feats.numpy())
    log.info("lifted %d-d features of %d Gaussians -> %s", feats.shape[1], feats.shape[0], out)
    return feats
