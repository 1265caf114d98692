"""SAM-style automatic mask generation in plain torch: point grid -> masks -> filters -> NMS.

For every point of a regular grid the promptable model returns a few candidate masks (whole,
part, sub-part) with a predicted IoU. Candidates are kept when the predicted IoU and the
*stability score* are high, then duplicates are removed by greedy non-maximum suppression on
mask IoU (SAM uses box NMS from torchvision, which we cannot install; mask IoU is stricter).

stability = |logits > t + offset| / |logits > t - offset|  (1 = the mask barely moves when the
threshold moves, i.e. a confident boundary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from structgs.masks.base import MaskProposal, mask_iou_matrix
from structgs.utils.errors import InputError


@dataclass(frozen=True)
class AutoMaskConfig:
    """Thresholds of the automatic mask generator (SAM 2's defaults where they exist)."""

    points_per_side: int = 16
    """Grid of points_per_side^2 prompts over the view."""
    points_per_batch: int = 64
    """Prompts decoded per forward pass of the mask decoder."""
    pred_iou_thresh: float = 0.8
    """Minimum predicted IoU of a kept mask."""
    stability_score_thresh: float = 0.95
    """Minimum stability score of a kept mask."""
    stability_score_offset: float = 1.0
    """Logit offset used by the stability score."""
    mask_threshold: float = 0.0
    """Logit threshold that binarises masks."""
    nms_iou_thresh: float = 0.7
    """Masks overlapping a better one by more than this IoU are dropped."""
    min_area_fraction: float = 0.001
    """Masks smaller than this fraction of the view are dropped."""


def point_grid(points_per_side: int, height: int, width: int) -> torch.Tensor:
    """(n*n, 2) xy pixel coordinates of a regular grid of cell centres."""
    if points_per_side < 1:
        raise InputError(f"points_per_side must be >= 1, got {points_per_side}")
    t = (torch.arange(points_per_side, dtype=torch.float32) + 0.5) / points_per_side
    ys, xs = torch.meshgrid(t * height, t * width, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(...,) stability of (..., H, W) mask logits."""
    high = (logits > threshold + offset).flatten(-2).sum(-1).float()
    low = (logits > threshold - offset).flatten(-2).sum(-1).float()
    return high / low.clamp_min(1.0)


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Indices of masks kept by greedy NMS on mask IoU, best score first."""
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True)
    iou = mask_iou_matrix(masks[order], masks[order])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thresh
    return order[torch.tensor(keep, dtype=torch.long)]


PredictFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def generate_masks(predict: PredictFn, height: int, width: int, config: AutoMaskConfig) -> list[MaskProposal]:
    """Run ``predict`` on a point grid and filter its candidates.

    ``predict(points)`` takes (B, 2) xy points and returns mask logits (B, M, height, width) and
    predicted IoUs (B, M) (M candidates per point).
    """
    grid = point_grid(config.points_per_side, height, width)
    min_area = config.min_area_fraction * height * width
    kept_masks, kept_scores = [], []
    for start in range(0, len(grid), config.points_per_batch):
        logits, ious = predict(grid[start:start + config.points_per_batch])
        logits, ious = logits.flatten(0, 1), ious.flatten(0, 1)
        stab = stability_score(logits, config.mask_threshold, config.stability_score_offset)
        masks = logits > config.mask_threshold
        ok = (ious >= config.pred_iou_thresh) & (stab >= config.stability_score_thresh)
        ok &= masks.flatten(1).sum(1) >= min_area
        kept_masks.append(masks[ok])
        kept_scores.append(ious[ok])
    masks, scores = torch.cat(kept_masks), torch.cat(kept_scores)
    keep = mask_nms(masks, scores, config.nms_iou_thresh)
    return [MaskProposal(masks[i], float(scores[i])) for i in keep.tolist()]
