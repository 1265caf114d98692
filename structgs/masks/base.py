"""Interfaces of the mask sources and small mask helpers shared by all of them.

A *segmenter* is SAM's predictor pattern: ``set_image(name, image)`` once per view, then any
number of prompts on it (automatic point grid, points, a box). A *tracker* carries object
masks from view to view (SAM 2 video memory, or the scene's own Gaussians). A *detector*
turns a text prompt into boxes (Grounding DINO). Masks are (H, W) bool tensors in the view's
pixel grid; points are (x, y) pixel coordinates; boxes are (x0, y0, x1, y1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from structgs.utils.errors import InputError


@dataclass
class MaskProposal:
    mask: torch.Tensor  # (H, W) bool
    score: float  # predicted IoU (SAM) or 1.0 for exact sources

    @property
    def area(self) -> int:
        return int(self.mask.sum())


class Segmenter(Protocol):
    def set_image(self, name: str, image: torch.Tensor) -> None:
        """Select the view to prompt on; ``image`` is (H, W, 3) float in [0, 1]."""

    def automatic(self) -> list[MaskProposal]:
        """Every object-like mask of the current view (ids are arbitrary, per view)."""

    def from_points(self, points: torch.Tensor, labels: torch.Tensor) -> MaskProposal:
        """One mask from (K, 2) xy points with (K,) labels (1 = object, 0 = not object)."""

    def from_box(self, box: torch.Tensor) -> MaskProposal:
        """One mask from an (x0, y0, x1, y1) box."""


class Tracker(Protocol):
    def start(self, names: list[str], images: list[torch.Tensor]) -> None:
        """Begin a sequence of views (already ordered by camera proximity)."""

    def condition(self, frame: int, masks: dict[int, torch.Tensor]) -> None:
        """Tell the tracker the final masks of objects on ``frame`` (their memory from now on)."""

    def track(self, frame: int) -> dict[int, torch.Tensor]:
        """Predicted masks of every known object on ``frame`` (absent objects may be missing)."""


class Detector(Protocol):
    def detect(self, name: str, image: torch.Tensor, text: str) -> list[tuple[torch.Tensor, float]]:
        """Boxes (x0, y0, x1, y1) in pixels with scores for ``text``, best first."""


def check_mask(mask: torch.Tensor, size: tuple[int, int], what: str) -> torch.Tensor:
    if mask.ndim != 2 or tuple(mask.shape) != tuple(size):
        raise InputError(f"{what}: expected a mask of shape {tuple(size)}, got {tuple(mask.shape)}")
    return mask.bool()


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, B) IoU between stacks of masks (A, H, W) and (B, H, W)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0])
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return inter / union.clamp_min(1.0)


def mask_box(mask: torch.Tensor) -> torch.Tensor | None:
    """Tight (x0, y0, x1, y1) box of a mask (pixel edges), or None when empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def boundary_depth(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) float: how many 3x3 erosions each pixel of ``mask`` survives (0 outside)."""
    depth = torch.zeros(mask.shape)
    cur = mask.float()[None, None]
    while cur.sum() > 0:
        depth += cur[0, 0]
        cur = -torch.nn.functional.max_pool2d(-cur, 3, 1, 1)  # erosion
    return depth


def interior_points(mask: torch.Tensor, count: int = 3) -> torch.Tensor:
    """Up to ``count`` (x, y) points deep inside a mask, spread apart (SA3D-style prompts).

    Depth is the distance to the mask boundary (:func:`boundary_depth`); the first point is the
    deepest pixel, each next one the deepest pixel far from those already chosen.
    """
    m = mask.bool()
    if not m.any():
        return torch.zeros(0, 2)
    depth = boundary_depth(m)
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]), torch.arange(m.shape[1]), indexing="ij")
    chosen: list[tuple[int, int]] = []
    score = depth.clone()
    for _ in range(count):
        if score.max() <= 0:
            break
        flat = int(score.argmax())
        y, x = divmod(flat, m.shape[1])
        chosen.append((x, y))
        dist = ((xs - x) ** 2 + (ys - y) ** 2).float().sqrt()
        score = score * (dist / (dist + depth.max())).clamp(0, 1) * (dist > depth[y, x]).float()
    return torch.tensor(chosen, dtype=torch.float32)


def paint_id_map(masks: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """(H, W) int64 id map; larger masks are painted first so smaller (nested) ones stay visible."""
    out = torch.zeros(size, dtype=torch.int64)
    for oid, m in sorted(masks.items(), key=lambda kv: -int(kv[1].sum())):
        out[m] = oid
    return out
