"""EWA projection of 3D Gaussians to the image plane (gsplat's "classic" conventions).

For a camera-space centre (x, y, z) and covariance S_cam = R S_w R^T, the 2D covariance is
J S_cam J^T + eps2d*I with the perspective Jacobian
    J = [[fx/z, 0, -fx*tx/z^2], [0, fy/z, -fy*ty/z^2]],
where tx, ty are x, y clamped to 1.3x the field of view (as gsplat and the INRIA code do).
The support radius is 3*sqrt(largest eigenvalue), and a Gaussian touches the 16x16 tiles
[floor((m - r)/16), ceil((m + r)/16)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TILE_SIZE = 16


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) wxyz quaternions (normalised here) -> (N, 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) world covariances R diag(s^2) R^T."""
    M = quat_to_rotmat(quats) * scales[:, None, :]
    return M @ M.transpose(1, 2)


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities for one camera (all (N, ...))."""

    means2d: torch.Tensor  # (N, 2) pixel coordinates (differentiable)
    conics: torch.Tensor  # (N, 3) inverse 2D covariance (a, b, c) of [[a, b], [b, c]] (differentiable)
    depths: torch.Tensor  # (N,) camera-space z (differentiable)
    radii: torch.Tensor  # (N,) int32 pixel radius, 0 for culled Gaussians
    cov2d: torch.Tensor  # (N, 3) dilated 2D covariance (a, b, c)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, world_to_camera: torch.Tensor,
            K: torch.Tensor, width: int, height: int, near: float = 0.01, far: float = 1e10,
            eps2d: float = 0.3) -> Projection:
    R, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    cov_cam = R @ covariance_3d(quats, scales) @ R.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)  # culled below anyway; avoids inf
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x / zs))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y / zs))
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1).reshape(-1, 2, 3)
    cov2 = J @ cov_cam @ J.transpose(1, 2)
    a, b, c = cov2[:, 0, 0] + eps2d, cov2[:, 0, 1], cov2[:, 1, 1] + eps2d
    det = a * c - b * b
    valid = (z > near) & (z < far) & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.01))
        radius = torch.ceil(3.0 * torch.sqrt(lam))
        m = means2d
        onscreen = (m[:, 0] + radius > 0) & (m[:, 0] - radius < width) & (m[:, 1] + radius > 0) & (m[:, 1] - radius < height)
        valid = valid & onscreen & (radius > 0)
        radii = torch.where(valid, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d, conics, z, radii, torch.stack([a, b, c], -1))


def tile_rects(means2d: torch.Tensor, radii: torch.Tensor, tiles_w: int, tiles_h: int) -> torch.Tensor:
    """(N, 4) int64 [x0, y0, x1, y1) tile ranges (empty for culled Gaussians), as gsplat."""
    m = means2d.detach().to(torch.float64) / TILE_SIZE
    r = radii.to(torch.float64) / TILE_SIZE
    x0 = torch.floor(m[:, 0] - r).clamp(0, tiles_w)
    x1 = torch.ceil(m[:, 0] + r).clamp(0, tiles_w)
    y0 = torch.floor(m[:, 1] - r).clamp(0, tiles_h)
    y1 = torch.ceil(m[:, 1] + r).clamp(0, tiles_h)
    rect = torch.stack([x0, y0, x1, y1], -1).to(torch.int64)
    rect[radii <= 0] = 0
    return rect
