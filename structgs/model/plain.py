"""The decoded scene as a plain 3DGS (what ``structgs export`` writes and other splat tools open).

View-dependent colours become spherical harmonics by least squares: the decoder's colour is
sampled along M directions d_m spread over the sphere (the same direction convention as
3DGS: from the camera to the Gaussian), and each Gaussian's coefficients solve

    min_s  sum_m || B(d_m) s - (c(d_m) - 0.5) ||^2      =>   s = B^+ (c - 0.5)

with B (M, K) the real SH basis of degree L (K = (L+1)^2; 3DGS adds 0.5 after evaluating).
B^+ is the same for every Gaussian, so the projection is one accumulation over directions,
chunked over Gaussians: memory O(chunk x hidden + N x K x 3).
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from structgs.model.scene_model import fibonacci_directions
from structgs.render.sh import sh_basis
from structgs.scene.cameras import Camera
from structgs.scene.gaussians import Gaussians, num_sh_bases, rgb_to_sh_dc

SH_DIRECTIONS = 96
"""Directions the colours are sampled along for the projection (6x the 16 bases of degree 3)."""


@torch.no_grad()
def sh_coefficients(model, degree: int, directions: int = SH_DIRECTIONS, chunk: int = 1 << 18,
                    progress: bool = False) -> torch.Tensor:
    """(N, (degree+1)^2, 3) SH coefficients whose 3DGS evaluation best matches ``model``'s
    colours over the sphere (least squares over ``directions`` sampled directions)."""
    k = num_sh_bases(degree)
    if not model.view_dependent_colors:  # nothing varies with the view: DC only, zero rest
        sh = torch.zeros(model.num_gaussians, k, 3)
        sh[:, 0] = rgb_to_sh_dc(model.colors()).float().cpu()
        return sh
    dirs = fibonacci_directions(max(directions, 2 * k)).to(model.device)
    pinv = torch.linalg.pinv(sh_basis(dirs.double(), degree)).float()  # (K, M)
    out = torch.empty(model.num_gaussians, k, 3)
    bar = tqdm(total=len(dirs) * -(-model.num_gaussians // chunk), desc=f"colours -> SH degree {degree}",
               disable=not progress, leave=False)
    for start in range(0, model.num_gaussians, chunk):
        idx = torch.arange(start, min(start + chunk, model.num_gaussians), device=model.device)
        acc = torch.zeros(idx.numel(), k, 3, device=model.device)
        for m, d in enumerate(dirs):
            acc += pinv[None, :, m, None] * (model.colors(d, idx) - 0.5)[:, None, :]
            bar.update()
        out[start:start + idx.numel()] = acc.cpu()
    bar.close()
    return out


@torch.no_grad()
def decoded_gaussians(model, camera: Camera | None = None, sh_degree: int = 0, progress: bool = False) -> Gaussians:
    """``model`` decoded as a plain 3DGS (float32, CPU; stored order, removed Gaussians included).

    ``camera``: colours as that view sees them (SH degree 0). Otherwise view-dependent colours
    are projected onto SH of ``sh_degree`` (0: their mean over the sphere). Normals are the
    input PLY's when the run keeps them (``model.scene.normals``), else zeros or none."""
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
    s = model.decode(camera)
    if camera is not None:
        sh = rgb_to_sh_dc(s.colors).float().cpu()[:, None, :]
    elif sh_degree == 0:
        sh = rgb_to_sh_dc(model.view_independent_colors()).float().cpu()[:, None, :]
    else:
        sh = sh_coefficients(model, sh_degree, progress=progress)
    op = s.opacities.reshape(-1).clamp(1e-6, 1 - 1e-6)
    kind = model.scene.normals
    normals = None if kind == "none" else (
        model.normals.float().cpu() if kind == "stored" else torch.zeros(model.num_gaussians, 3))
    return Gaussians(s.means.float().cpu(), s.quats.float().cpu(), torch.log(s.scales).float().cpu(),
                     torch.log(op / (1 - op)).float().cpu(), sh.contiguous(), normals=normals)
