"""Oracle mask sources backed by ground-truth id masks (the built-in scene's ``masks/``).

They stand in for SAM 2 and Grounding DINO where no weights exist, so that everything around
the models (prompting, propagation, association, id bookkeeping) is tested on real data: the
automatic masks come out per view in random order with no shared ids (like raw SAM output), a
point returns the segment under it, a box the segment that fills it best, a text the box of
the object whose name contains a word of the text. ``drop_probability`` and ``jitter`` make
the automatic masks imperfect like a real model's (objects missed in some views, boundaries
off by a pixel).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from structgs.masks.base import MaskProposal, mask_box
from structgs.scene.dataset import SceneDataset
from structgs.utils.errors import InputError


class OracleSegmenter:
    def __init__(self, masks: dict[str, torch.Tensor], ignore_ids: tuple[int, ...] = (0,), seed: int = 0,
                 drop_probability: float = 0.0, jitter: bool = False):
        self.masks, self.ignore_ids = masks, set(ignore_ids)
        self.drop_probability, self.jitter = drop_probability, jitter
        self.generator = torch.Generator().manual_seed(seed)
        self.current: torch.Tensor | None = None
        self.name = ""

    @classmethod
    def from_dataset(cls, dataset: SceneDataset, masks_dir: Path, split: str = "all", **kwargs) -> OracleSegmenter:
        cams = dataset.all_cameras if split == "all" else dataset.split(split)
        return cls({c.name: dataset.mask(c, masks_dir) for c in cams}, **kwargs)

    def set_image(self, name: str, image: torch.Tensor) -> None:
        if name not in self.masks:
            raise InputError(f"oracle segmenter: no ground-truth mask for view {name!r}")
        self.current, self.name = self.masks[name], name
        if tuple(image.shape[:2]) != tuple(self.current.shape):
            raise InputError(f"oracle segmenter: view {name} image is {tuple(image.shape[:2])}, "
                             f"its mask {tuple(self.current.shape)}")

    def _segments(self) -> list[int]:
        return [int(i) for i in self.current.unique() if int(i) not in self.ignore_ids]

    def _perturb(self, mask: torch.Tensor) -> torch.Tensor:
        if not self.jitter:
            return mask
        m = mask.float()[None, None]
        if float(torch.rand(1, generator=self.generator)) < 0.5:
            m = torch.nn.functional.max_pool2d(m, 3, 1, 1)  # dilate by one pixel
        else:
            m = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)  # erode by one pixel
        return m[0, 0] > 0.5

    def automatic(self) -> list[MaskProposal]:
        ids = self._segments()
        order = torch.randperm(len(ids), generator=self.generator).tolist()
        keep = torch.rand(len(ids), generator=self.generator) >= self.drop_probability
        return [MaskProposal(self._perturb(self.current == ids[k]), 1.0) for k in order if keep[k]]

    def from_points(self, points: torch.Tensor, labels: torch.Tensor) -> MaskProposal:
        h, w = self.current.shape
        for (x, y), lab in zip(points.tolist(), labels.tolist()):
            xi, yi = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
            sid = int(self.current[yi, xi])
            if lab == 1 and sid not in self.ignore_ids:
                return MaskProposal(self.current == sid, 1.0)
        return MaskProposal(torch.zeros_like(self.current, dtype=torch.bool), 0.0)

    def from_box(self, box: torch.Tensor) -> MaskProposal:
        x0, y0, x1, y1 = [int(round(float(v))) for v in box]
        best, best_iou = None, 0.0
        for sid in self._segments():
            b = mask_box(self.current == sid)
            ix = max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))
            union = (x1 - x0) * (y1 - y0) + (b[2] - b[0]) * (b[3] - b[1]) - ix
            iou = float(ix / max(union, 1.0))
            if iou > best_iou:
                best, best_iou = sid, iou
        if best is None:
            return MaskProposal(torch.zeros_like(self.current, dtype=torch.bool), 0.0)
        return MaskProposal(self.current == best, best_iou)


class OracleDetector:
    """Text -> the box of every ground-truth object whose name shares a word with the text."""

    def __init__(self, masks: dict[str, torch.Tensor], names: dict[int, str]):
        self.masks, self.names = masks, names

    @classmethod
    def from_scene(cls, dataset: SceneDataset, masks_dir: Path, scene_json: Path) -> OracleDetector:
        objects = json.loads(Path(scene_json).read_text())["objects"]
        names = {int(o["id"]): str(o["name"]).replace("_", " ") for o in objects}
        return cls({c.name: dataset.mask(c, masks_dir) for c in dataset.all_cameras}, names)

    def detect(self, name: str, image: torch.Tensor, text: str) -> list[tuple[torch.Tensor, float]]:
        words = set(text.lower().replace(".", " ").split())
        out = []
        for oid, oname in self.names.items():
            if words & set(oname.lower().split()):
                box = mask_box(self.masks[name] == oid)
                if box is not None:
                    out.append((box, 1.0))
        return out
