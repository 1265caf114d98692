"""The functional rendering API: one call renders Gaussians for one camera.

    out = rasterize(means, quats, scales, opacities, colors, camera)
    out.image  (H, W, C)   out.alpha (H, W, 1)   out.depth (H, W, 1)

``colors`` may carry any number of channels (RGB, masks, decoder activations, ...).
Backends: ``torch`` (reference, CPU or GPU), ``gsplat`` (CUDA), ``auto`` (gsplat when CUDA
and gsplat are present, else torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from structgs.render import torch_backend
from structgs.render.gsplat_backend import gsplat_available, rasterize_gsplat
from structgs.render.projection import project
from structgs.render.sh import eval_sh
from structgs.render.tiles import DEFAULT_CHUNK_BUDGET, build_plan
from structgs.scene.cameras import Camera
from structgs.scene.gaussians import Gaussians
from structgs.utils.checks import check_shape
from structgs.utils.errors import InputError

Backend = Literal["auto", "torch", "gsplat"]


@dataclass
class RenderOutput:
    """Always the same fields, whatever the backend.

    Attributes:
        image: (H, W, C) blended colours/features plus (1 - alpha) * background.
        alpha: (H, W, 1) accumulated opacity.
        depth: (H, W, 1) accumulated depth sum_i w_i z_i (divide by alpha for expected depth).
        radii: (N,) int32 pixel radius of each Gaussian, 0 if culled.
        means2d: (N, 2) projected centres (call ``retain_grad()`` before backward for densification).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor


def resolve_backend(backend: Backend, device: torch.device) -> str:
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    if backend not in ("torch", "gsplat"):
        raise InputError(f"unknown render backend '{backend}' (auto, torch or gsplat)")
    return backend


def _check_inputs(means, quats, scales, opacities, colors):
    check_shape(means, ("N", 3), "means")
    n = means.shape[0]
    check_shape(quats, (n, 4), "quats")
    check_shape(scales, (n, 3), "scales")
    check_shape(opacities, (n,), "opacities")
    if colors.ndim != 2 or colors.shape[0] != n:
        raise InputError(f"colors: expected shape ({n}, C), got {tuple(colors.shape)}")


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              colors: torch.Tensor, camera: Camera, *, background: torch.Tensor | None = None,
              backend: Backend = "auto", near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
              alpha_clamp: float = 0.999, chunk_budget: int = DEFAULT_CHUNK_BUDGET,
              compile_kernels: bool = False) -> RenderOutput:
    """Render N Gaussians (activated parameters) for one camera.

    Args:
        means: (N, 3) world centres. quats: (N, 4) wxyz (normalised internally).
        scales: (N, 3) standard deviations (already exp'd). opacities: (N,) in [0, 1].
        colors: (N, C) colours or features, any C.
        camera: the view; its matrices are moved to the tensors' device and dtype.
        background: (C,) colour for empty pixels (default zeros).
        alpha_clamp: max alpha per Gaussian (gsplat 0.999; the INRIA code uses 0.99).
        chunk_budget: torch backend: elements (tiles x 256 x chunk) per step; bounds memory.
        compile_kernels: torch backend: torch.compile the per-chunk kernels (slow first call).
    """
    _check_inputs(means, quats, scales, opacities, colors)
    cam = camera.to(means.device, means.dtype)
    c = colors.shape[1]
    if background is not None and background.numel() != c:
        raise InputError(f"background: expected {c} values (one per colour channel), got {background.numel()}")
    use = resolve_backend(backend, means.device)
    if use == "gsplat":
        feats, alpha, radii, means2d = rasterize_gsplat(means, quats, scales, opacities, colors, cam.world_to_camera,
                                                        cam.K, cam.width, cam.height, near, far, eps2d, alpha_clamp)
        image, depth, T = feats[..., :c], feats[..., c:], 1.0 - alpha
    else:
        proj = project(means, quats, scales, cam.world_to_camera, cam.K, cam.width, cam.height, near, far, eps2d)
        plan = build_plan(proj.means2d, proj.depths, proj.radii, cam.width, cam.height, proj.cov2d, opacities)
        feats = torch.cat([colors, proj.depths[:, None]], dim=1)
        out, T = torch_backend.blend(plan, proj.means2d, proj.conics, opacities, feats, alpha_clamp, chunk_budget,
                                     compile_kernels)
        image, depth, radii, means2d = out[..., :c], out[..., c:], proj.radii, proj.means2d
    if background is not None:
        image = image + T[..., None] * background.to(image)
    return RenderOutput(image, (1.0 - T)[..., None], depth, radii, means2d)


def contributions(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                  camera: Camera, *, pixel_weights: torch.Tensor | None = None, near: float = 0.01,
                  far: float = 1e10, eps2d: float = 0.3, alpha_clamp: float = 0.999,
                  chunk_budget: int = DEFAULT_CHUNK_BUDGET) -> torch_backend.Contributions:
    """Per-Gaussian max blending weight alpha*T (and its pixel), per-pixel top Gaussian, and sums.

    ``pixel_weights``: optional (H, W) or (H, W, K) map; returns sum_p pixel_weights[p] * w_i(p)
    per Gaussian (the masked-gradient vote). Never builds an N x pixels matrix. Runs the torch
    backend on the tensors' device (CPU or CUDA).
    """
    _check_inputs(means, quats, scales, opacities, means[:, :1])
    cam = camera.to(means.device, means.dtype)
    if pixel_weights is not None:
        if pixel_weights.ndim == 2:
            pixel_weights = pixel_weights[..., None]
        if tuple(pixel_weights.shape[:2]) != (cam.height, cam.width):
            raise InputError(f"pixel_weights: expected shape ({cam.height}, {cam.width}[, K]) for view "
                             f"{cam.name}, got {tuple(pixel_weights.shape)}")
    with torch.no_grad():
        proj = project(means, quats, scales, cam.world_to_camera, cam.K, cam.width, cam.height, near, far, eps2d)
        plan = build_plan(proj.means2d, proj.depths, proj.radii, cam.width, cam.height, proj.cov2d, opacities)
        return torch_backend.contributions_from_plan(plan, proj.means2d, proj.conics, opacities, alpha_clamp,
                                                     pixel_weights, chunk_budget)


def render_gaussians(gaussians: Gaussians, camera: Camera, *, background: torch.Tensor | None = None,
                     sh_degree: int | None = None, backend: Backend = "auto", **kwargs) -> RenderOutput:
    """Render a :class:`Gaussians` container (evaluates SH for the camera's view directions)."""
    g = gaussians if sh_degree is None else gaussians.with_sh_degree(sh_degree)
    if g.sh_degree == 0:
        colors = torch.clamp_min(g.rgb_dc, 0.0)
    else:
        colors = eval_sh(g.sh, camera.to(g.device, g.means.dtype).view_directions(g.means))
    return rasterize(g.means, g.quats, g.scales, g.opacities, colors, camera, background=background,
                     backend=backend, **kwargs)
