"""Label grids: the majority label per patch, and patch labels back at pixel resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_majority(label_map: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h, w) most frequent label of the pixels each cell of an (h, w) grid covers."""
    n = int(label_map.max()) + 1
    onehot = F.one_hot(label_map.long(), n).permute(2, 0, 1)[None].float()
    counts = F.adaptive_avg_pool2d(onehot, (h, w))[0]  # (n, h, w) share of each label
    return counts.argmax(0)


def upsample_labels(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) nearest-neighbour upsampling of an (h, w) label grid."""
    return F.interpolate(labels[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
