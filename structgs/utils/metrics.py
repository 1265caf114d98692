"""Image and segmentation metrics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (predictions clamped)."""
    mse = torch.mean((pred.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (H, W, C) images (differentiable; the 3DGS formulation, 'same' padding)."""
    x, y = pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    c = x.shape[1]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    pad = window // 2
    mu_x, mu_y = F.conv2d(x, k, padding=pad, groups=c), F.conv2d(y, k, padding=pad, groups=c)
    sxx = F.conv2d(x * x, k, padding=pad, groups=c) - mu_x**2
    syy = F.conv2d(y * y, k, padding=pad, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, k, padding=pad, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return m.mean()


def iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    pred, target = pred.bool(), target.bool()
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union


def matched_agreement(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Fraction of positions whose id equals the truth after an optimal one-to-one id matching
    (Hungarian on the id co-occurrence counts): how well arbitrary ids recover true ones."""
    from scipy.optimize import linear_sum_assignment

    pred, truth = pred.reshape(-1), truth.reshape(-1)
    if pred.numel() == 0:
        return 0.0
    up, ip = pred.unique(return_inverse=True)
    ut, it = truth.unique(return_inverse=True)
    joint = torch.bincount(ip * len(ut) + it, minlength=len(up) * len(ut)).reshape(len(up), len(ut))
    r, c = linear_sum_assignment(-joint.numpy())
    return float(joint[r, c].sum()) / pred.numel()


def boundary_band(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Mask minus its erosion by ``steps`` 3x3 steps (the LERF-Mask boundary protocol)."""
    m = mask.float()[None, None]
    eroded = m
    for _ in range(max(steps, 1)):
        eroded = -F.max_pool2d(-F.pad(eroded, (1, 1, 1, 1), value=0.0), 3, stride=1)
    return mask.bool() & ~(eroded[0, 0] > 0.5)


def boundary_iou(pred: torch.Tensor, target: torch.Tensor, frac: float = 0.02) -> float:
    """IoU of the boundary bands, width round(frac * image diagonal) pixels."""
    h, w = target.shape
    steps = max(1, round(frac * math.hypot(h, w)))
    return iou(boundary_band(pred, steps), boundary_band(target, steps))
