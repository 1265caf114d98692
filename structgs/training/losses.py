"""Photometric and attribute-regression losses."""

from __future__ import annotations

import torch

from structgs.utils.metrics import ssim


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM) on (H, W, 3) images (the 3DGS loss)."""
    l1 = (pred - target).abs().mean()
    if ssim_weight == 0:
        return l1
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim(pred, target))


def quaternion_distance(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean 1 - |<q, t>| of unit quaternions (sign-invariant)."""
    t = target / target.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (1 - (q * t).sum(-1).abs()).mean()
