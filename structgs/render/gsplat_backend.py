"""gsplat (CUDA) backend, imported lazily; same conventions as the torch backend."""

from __future__ import annotations

import torch

from structgs.utils.errors import InputError, MissingDependencyError


def gsplat_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def rasterize_gsplat(means, quats, scales, opacities, features, world_to_camera, K, width, height, near, far,
                     eps2d, alpha_clamp):
    """Returns (features_with_depth (H, W, F+1), alpha (H, W), radii (N,), means2d (N, 2))."""
    try:
        from gsplat import rasterization
    except ImportError as e:
        raise MissingDependencyError("backend='gsplat' needs gsplat: pip install 'structgs[cuda]'") from e
    if abs(alpha_clamp - 0.999) > 1e-12:
        raise InputError(f"the gsplat backend clamps alpha at 0.999; got alpha_clamp={alpha_clamp} (use backend='torch')")
    if means.device.type != "cuda":
        raise InputError(f"the gsplat backend needs CUDA tensors, got {means.device}")
    renders, alphas, meta = rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=features,
        viewmats=world_to_camera[None], Ks=K[None], width=width, height=height, near_plane=near,
        far_plane=far, eps2d=eps2d, packed=False, render_mode="RGB+D", rasterize_mode="classic", tile_size=16,
    )
    radii = meta["radii"][0]
    if radii.ndim == 2:  # newer gsplat: per-axis radii
        radii = radii.max(dim=-1).values
    return renders[0], alphas[0, ..., 0], radii, meta["means2d"][0]
