"""`structgs masks`: a user's images -> consistent id masks (the masks convention) + masks.json.

Sources: SAM 2 (``--weights``) or, for testing and evaluation, an oracle backed by existing id
masks (``--oracle-masks``); Grounding DINO (``--detector-weights``) for ``--text``. Trackers:
SAM 2 video memory (needs ``--weights``) or the scene's Gaussians (needs ``--ply``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from structgs.masks.association import (AssociationConfig, MaskSequence, associate, associate_by_consensus,
                                        propagate_prompt)
from structgs.masks.automatic import AutoMaskConfig
from structgs.masks.propagation import GaussianTracker, order_views
from structgs.scene.dataset import SceneDataset, load_dataset
from structgs.scene.images import save_id_mask
from structgs.utils.device import resolve_device
from structgs.utils.io import refuse_overwrite, replace_dir_atomically, write_json
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError, NothingFoundError

log = get_logger("masks")


@dataclass
class MaskSources:
    """Which models (or oracles) produce and carry the masks."""

    weights: Path | None = None
    """SAM 2 checkpoint directory (transformers format)."""
    detector_weights: Path | None = None
    """Grounding DINO checkpoint directory (for --text)."""
    oracle_masks: Path | None = None
    """Existing id masks standing in for SAM 2 (ids may differ per view); for tests/evaluation."""
    scene_json: Path | None = None
    """Oracle text prompts: object names from the built-in scene's scene.json (boxes from the
    ground-truth masks/ beside it)."""
    ply: Path | None = None
    """Pre-trained 3DGS for the Gaussian tracker."""
    tracker: str = "auto"
    """sam2, gaussians, or auto (sam2 with --weights, else gaussians with --ply)."""
    device: str = "auto"


def build_segmenter(src: MaskSources, ds: SceneDataset, device: torch.device, auto: AutoMaskConfig | None):
    if (src.weights is None) == (src.oracle_masks is None):
        raise InputError("give exactly one mask source: --weights SAM2_DIR or --oracle-masks DIR")
    if src.weights is not None:
        from structgs.masks.sam2 import Sam2Segmenter

        return Sam2Segmenter.from_pretrained(src.weights, device, auto)
    from structgs.masks.oracle import OracleSegmenter

    return OracleSegmenter.from_dataset(ds, Path(src.oracle_masks))


def build_tracker(src: MaskSources, ds: SceneDataset, device: torch.device):
    kind = src.tracker
    if kind == "auto":
        kind = "sam2" if src.weights is not None else "gaussians"
    if kind == "sam2":
        if src.weights is None:
            raise InputError("--tracker sam2 needs --weights SAM2_DIR")
        from structgs.masks.sam2 import Sam2VideoTracker

        return Sam2VideoTracker.from_pretrained(src.weights, device)
    if kind == "gaussians":
        if src.ply is None:
            raise InputError("the Gaussian tracker needs --ply (the scene's pre-trained 3DGS)")
        from structgs.scene.ply import read_ply

        return GaussianTracker(read_ply(src.ply).to(device), {c.name: c for c in ds.all_cameras})
    raise InputError(f"unknown tracker {src.tracker!r} (sam2, gaussians, auto)")


def build_detector(src: MaskSources, ds: SceneDataset, device: torch.device):
    if src.detector_weights is not None:
        from structgs.masks.grounding import GroundingDinoDetector

        return GroundingDinoDetector.from_pretrained(src.detector_weights, device)
    if src.oracle_masks is not None and src.scene_json is not None:
        from structgs.masks.oracle import OracleDetector

        # names in scene.json refer to the ground-truth ids of the masks next to it
        return OracleDetector.from_scene(ds, Path(src.scene_json).parent / "masks", src.scene_json)
    raise InputError("--text needs --detector-weights GROUNDING_DINO_DIR")


def prompt_mask(segmenter, detector, ds: SceneDataset, view: str, image: torch.Tensor,
                pixels: list[tuple[int, int]] | None, text: str | None) -> tuple[torch.Tensor, dict]:
    """The first mask of a prompted object on ``view`` and a record of the prompt."""
    segmenter.set_image(view, image)
    if pixels:
        h, w = image.shape[:2]
        for x, y in pixels:
            if not (0 <= x < w and 0 <= y < h):
                raise InputError(f"--pixel {x} {y} is outside view {view} ({w}x{h})")
        pts = torch.tensor(pixels, dtype=torch.float32)
        prop = segmenter.from_points(pts, torch.ones(len(pixels), dtype=torch.int64))
        return prop.mask, {"view": view, "pixels": [list(p) for p in pixels], "score": prop.score}
    boxes = detector.detect(view, image, text)
    if not boxes:
        raise NothingFoundError(f"no box for {text!r} on view {view}")
    box, score = boxes[0]
    prop = segmenter.from_box(box)
    return prop.mask, {"view": view, "text": text, "box": [round(float(v), 2) for v in box], "box_score": score,
                       "score": prop.score}


def find_prompt_mask(segmenter, detector, ds: SceneDataset, views: list[str], pixels: list[tuple[int, int]] | None,
                     text: str | None) -> tuple[str, torch.Tensor, dict]:
    """The first of ``views`` where the prompt gives a mask: (view, mask, prompt record)."""
    for name in views:
        try:
            mask, prompt = prompt_mask(segmenter, detector, ds, name, ds.image(ds.camera(name)), pixels, text)
        except LookupError:  # no box for the text on this view
            continue
        if not mask.any():
            raise InputError(f"the prompt gave an empty mask on view {name}")
        return name, mask, prompt
    raise NothingFoundError(f"the detector found no {text!r} in " + (f"view {views[0]}" if len(views) == 1 else
                                                                 f"any of {len(views)} views"))


def prompt_on_dataset(sources: MaskSources, ds: SceneDataset, view: str | None,
                      pixels: list[tuple[int, int]] | None, text: str | None) -> tuple[str, torch.Tensor, dict]:
    """One 2D mask from a click or a text prompt (the view, the mask, the prompt record).

    ``text`` without ``view`` searches the training views in order for the first detection.
    """
    if pixels and view is None:
        raise InputError("--pixel needs --view NAME")
    device = resolve_device(sources.device)
    segmenter = build_segmenter(sources, ds, device, None)
    detector = build_detector(sources, ds, device) if text else None
    views = [view] if view is not None else [c.name for c in ds.split("train")]
    return find_prompt_mask(segmenter, detector, ds, views, pixels, text)


def make_masks(data: Path, out: Path, sources: MaskSources, *, split: str = "train", view: str | None = None,
               pixels: list[tuple[int, int]] | None = None, text: str | None = None, refine: bool = True,
               auto: AutoMaskConfig | None = None, association: AssociationConfig | None = None,
               ids: str = "auto", progress: bool = True) -> dict:
    """Write ``out/<view name>.png`` id masks and ``out/masks.json``; returns the JSON summary.

    ``ids`` (automatic masks): ``consensus`` (through the scene's 3DGS, needs ``sources.ply``;
    robust to merged and split masks), ``chain`` (the tracker along the proximity chain), or
    ``auto`` (consensus when a PLY is given, else chain).
    """
    data, out = Path(data), Path(out)
    refuse_overwrite(out, [data, data / "masks", sources.oracle_masks], "masks --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "masks.json").is_file():
        # the output replaces the directory whole: only ever replace an earlier `structgs masks` output
        raise InputError(f"masks --out {out} exists and is not a structgs masks directory (no masks.json); "
                         "choose a new or empty directory")
    if pixels and text:
        raise InputError("give --pixel or --text, not both")
    if ids not in ("auto", "consensus", "chain"):
        raise InputError(f"--ids must be auto, consensus or chain, got {ids!r}")
    if ids == "consensus" and sources.ply is None:
        raise InputError("--ids consensus needs --ply (the scene's pre-trained 3DGS)")
    if pixels and view is None:
        raise InputError("--pixel needs --view NAME")
    device = resolve_device(sources.device)
    ds = load_dataset(data)
    if split not in ("train", "test", "all"):
        raise InputError(f"--split must be train, test or all, got {split!r}")
    cams = ds.all_cameras if split == "all" else ds.split(split)
    names = [c.name for c in cams]
    segmenter = build_segmenter(sources, ds, device, auto)
    tracker = build_tracker(sources, ds, device)
    prompted = bool(pixels or text)
    start = 0
    if view is not None:
        if view not in names:
            ds.camera(view)  # raises with the list of valid names when unknown
            raise InputError(f"view {view} is not in the {split} split")
        start = names.index(view)
    order = [cams[i] for i in order_views(cams, start)]
    ordered_names = [c.name for c in order]
    images = [ds.image(c) for c in order]
    record: dict = {"mode": "prompt" if prompted else "automatic", "split": split,
                    "source": "sam2" if sources.weights else "oracle",
                    "tracker": type(tracker).__name__}
    if prompted:
        detector = build_detector(sources, ds, device) if text else None
        # text without --view: the first view (in proximity order) where the detector finds it
        candidates = ordered_names if (text and view is None) else ordered_names[:1]
        first_view, first, prompt = find_prompt_mask(segmenter, detector, ds, candidates, pixels, text)
        if first_view != ordered_names[0]:  # the chain starts at the prompted view
            order = [cams[i] for i in order_views(cams, names.index(first_view))]
            ordered_names, images = [c.name for c in order], [ds.image(c) for c in order]
        seq = propagate_prompt(segmenter, tracker, ordered_names, images, first, refine=refine, config=association,
                               progress=progress)
        record["prompt"] = prompt
    elif ids == "consensus" or (ids == "auto" and sources.ply is not None):
        from structgs.scene.ply import read_ply

        record["ids"] = "consensus"
        seq = associate_by_consensus(segmenter, read_ply(sources.ply).to(device), {c.name: c for c in ds.all_cameras},
                                     ordered_names, images, association, progress=progress)
    else:
        record["ids"] = "chain"
        seq = associate(segmenter, tracker, ordered_names, images, association, progress)
    _write(out, seq, record)
    return {**record, **seq.summary()}


def _write(out: Path, seq: MaskSequence, record: dict) -> None:
    def write(tmp: Path) -> None:
        for name, id_map in seq.id_maps.items():
            save_id_mask(id_map, tmp / f"{name}.png")
        write_json(tmp / "masks.json", {**record, **seq.summary(),
                                        "convention": "<dir>/<view name>.png, 0 = no object, ids consistent across views"})

    replace_dir_atomically(out, write)
    log.info("wrote %d id masks to %s", len(seq.id_maps), out)
