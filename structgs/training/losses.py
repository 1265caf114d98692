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


def attribute_l1(colors: torch.Tensor, opacities: torch.Tensor, log_scales: torch.Tensor, quats: torch.Tensor,
                 target_colors: torch.Tensor, target_opacities: torch.Tensor, target_log_scales: torch.Tensor,
                 target_quats: torch.Tensor, offsets: torch.Tensor | None = None,
                 target_offsets: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between decoded attributes and targets (half weight on log-scales, the sign-invariant
    quaternion distance for rotations): fitting's stage 1 and shaping's L_recon without rendering."""
    loss = (colors - target_colors).abs().mean() + (opacities - target_opacities).abs().mean()
    loss = loss + 0.5 * (log_scales - target_log_scales).abs().mean() + quaternion_distance(quats, target_quats)
    if offsets is not None:
        loss = loss + (offsets - target_offsets).abs().mean()
    return loss
