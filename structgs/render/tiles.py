"""Tile/Gaussian intersection lists and the per-chunk alpha-blending kernel.

Pixels are processed in square work tiles (``tile_size``, 8 by default), all tiles together:
at each step every still-active tile takes its next C depth-sorted Gaussians (a "chunk"), so
the work per step is (tiles, pixels per tile, C). A tile stops once its list is exhausted or
all its pixels are saturated, as in gsplat.

Which Gaussians a tile lists follows gsplat's rules exactly (a Gaussian reaches only the
pixels of the 16x16 tiles its 3-sigma radius touches) and then drops the Gaussians that
cannot reach alpha >= 1/255 on any pixel centre of the tile: o exp(-sigma) >= 1/255 needs
sigma <= ln(255 o), an ellipse whose bounding box has half-widths sqrt(2 ln(255 o) Sigma_xx)
and sqrt(2 ln(255 o) Sigma_yy) (Sigma: the dilated 2D covariance). Dropped entries would
have been skipped by the kernel anyway, so the image is unchanged; with 8x8 work tiles the
kernel evaluates 2.5-3x fewer (pixel, Gaussian) pairs than with gsplat's 16x16 tiles
(docs/measurements.md, "Rendering").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structgs.render.projection import TILE_SIZE, tile_rects

WORK_TILE = 8
"""Side of the square pixel blocks the blending loop works on (divides gsplat's 16)."""
ALPHA_MIN = 1.0 / 255.0
T_STOP = 1e-4
SIGMA_SKIP = 20.0  # exp(-20) = 2e-9: far below ALPHA_MIN for any opacity <= 1
CULL_MARGIN = 1e-3
"""Relative slack of the opacity-aware culling box (float32 rounding in the kernel's sigma)."""
# Elements (tiles x pixels x chunk) per step; bounds the memory of one chunk (~10 live tensors).
DEFAULT_CHUNK_BUDGET = 1 << 20


@dataclass
class TilePlan:
    """Which Gaussians touch which work tile, depth-sorted; built without gradients."""

    width: int
    height: int
    tile_size: int  # side of a work tile in pixels
    tiles_w: int
    tiles_h: int
    tile_start: torch.Tensor  # (T,) offset of each tile's list in `sorted_ids`
    tile_count: torch.Tensor  # (T,) list lengths
    sorted_ids: torch.Tensor  # (M,) Gaussian ids ordered by (tile, depth)
    pixel_xy: torch.Tensor  # (T, P, 2) pixel centres (+0.5) of each tile
    pixel_inside: torch.Tensor  # (T, P) pixel lies inside the image
    num_gaussians: int

    @property
    def num_tiles(self) -> int:
        return self.tiles_w * self.tiles_h

    @property
    def pixels_per_tile(self) -> int:
        return self.tile_size * self.tile_size

    def pixel_index(self) -> torch.Tensor:
        """(T, P) flat image index y*W + x of each tile pixel (garbage outside the image)."""
        xy = self.pixel_xy.floor().to(torch.int64)
        return xy[..., 1].clamp(0, self.height - 1) * self.width + xy[..., 0].clamp(0, self.width - 1)

    def to_image(self, tile_values: torch.Tensor) -> torch.Tensor:
        """(T, P, ...) -> (H, W, ...) cropped to the image."""
        rest, s = tile_values.shape[2:], self.tile_size
        v = tile_values.reshape(self.tiles_h, self.tiles_w, s, s, *rest)
        v = v.transpose(1, 2).reshape(self.tiles_h * s, self.tiles_w * s, *rest)
        return v[: self.height, : self.width]

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        """(H, W, ...) -> (T, P, ...), zero-padded outside the image."""
        rest, s = image.shape[2:], self.tile_size
        full = image.new_zeros(self.tiles_h * s, self.tiles_w * s, *rest)
        full[: self.height, : self.width] = image
        v = full.reshape(self.tiles_h, s, self.tiles_w, s, *rest).transpose(1, 2)
        return v.reshape(self.num_tiles, self.pixels_per_tile, *rest)


def work_tile_rects(means2d: torch.Tensor, radii: torch.Tensor, cov2d: torch.Tensor | None,
                    opacities: torch.Tensor | None, tile_size: int, tiles_w: int, tiles_h: int) -> torch.Tensor:
    """(N, 4) int64 [x0, y0, x1, y1) ranges of work tiles each Gaussian may reach: gsplat's
    16x16-tile rectangle, narrowed to the tiles whose pixel centres meet the box of the
    Gaussian's alpha >= 1/255 ellipse (when ``cov2d`` and ``opacities`` are given)."""
    if TILE_SIZE % tile_size:
        raise ValueError(f"tile_size must divide {TILE_SIZE}, got {tile_size}")
    f = TILE_SIZE // tile_size
    big = tile_rects(means2d, radii, (tiles_w + f - 1) // f, (tiles_h + f - 1) // f) * f
    x0, y0 = big[:, 0], big[:, 1]
    x1, y1 = big[:, 2].clamp(max=tiles_w), big[:, 3].clamp(max=tiles_h)
    if cov2d is not None and opacities is not None:
        cov, o = cov2d.detach().to(torch.float64), opacities.detach().to(torch.float64)
        level = (torch.log(255.0 * o.clamp_min(1e-30)) + CULL_MARGIN).clamp_min(0)  # sigma <= level: alpha >= 1/255
        half = torch.sqrt(2.0 * level[:, None] * cov[:, [0, 2]]) * (1 + CULL_MARGIN) + CULL_MARGIN
        m = means2d.detach().to(torch.float64)
        # tile k holds pixel centres k*s + 0.5 .. k*s + s - 0.5
        lo = torch.ceil((m - half - (tile_size - 0.5)) / tile_size).to(torch.int64)
        hi = torch.floor((m + half - 0.5) / tile_size).to(torch.int64) + 1
        x0, y0 = torch.maximum(x0, lo[:, 0]), torch.maximum(y0, lo[:, 1])
        x1, y1 = torch.minimum(x1, hi[:, 0]), torch.minimum(y1, hi[:, 1])
        never = level <= 0  # o < 1/255: no pixel takes it
        x1 = torch.where(never, x0, x1)
    x1, y1 = torch.maximum(x1, x0), torch.maximum(y1, y0)
    return torch.stack([x0, y0, x1, y1], -1)


def build_plan(means2d: torch.Tensor, depths: torch.Tensor, radii: torch.Tensor, width: int, height: int,
               cov2d: torch.Tensor | None = None, opacities: torch.Tensor | None = None,
               tile_size: int = WORK_TILE) -> TilePlan:
    """Depth-sorted Gaussian lists of every work tile (see the module docstring); without
    ``cov2d`` and ``opacities`` the lists hold every Gaussian gsplat's tiles allow."""
    device = means2d.device
    n = means2d.shape[0]
    tiles_w, tiles_h = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    num_tiles = tiles_w * tiles_h
    rect = work_tile_rects(means2d, radii, cov2d, opacities, tile_size, tiles_w, tiles_h)
    nx, ny = rect[:, 2] - rect[:, 0], rect[:, 3] - rect[:, 1]
    counts = nx * ny
    ids = torch.repeat_interleave(torch.arange(n, device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(ids.numel(), device=device) - first[ids]
    tile = (rect[ids, 1] + local // nx[ids]) * tiles_w + rect[ids, 0] + local % nx[ids]
    # sort by (tile, depth): depth rank is stable so ties keep the Gaussian order
    depth_rank = torch.empty(n, dtype=torch.int64, device=device)
    depth_rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(n, device=device)
    order = torch.argsort(tile * max(n, 1) + depth_rank[ids])
    sorted_ids, sorted_tiles = ids[order], tile[order]
    tile_count = torch.bincount(sorted_tiles, minlength=num_tiles)
    tile_start = torch.cumsum(tile_count, 0) - tile_count
    # pixel centres of every tile
    ty, tx = torch.meshgrid(torch.arange(tiles_h, device=device), torch.arange(tiles_w, device=device), indexing="ij")
    py, px = torch.meshgrid(torch.arange(tile_size, device=device), torch.arange(tile_size, device=device),
                            indexing="ij")
    gx = tx.reshape(-1, 1) * tile_size + px.reshape(1, -1)
    gy = ty.reshape(-1, 1) * tile_size + py.reshape(1, -1)
    pixel_xy = torch.stack([gx, gy], -1).to(means2d.dtype) + 0.5
    inside = (gx < width) & (gy < height)
    return TilePlan(width, height, tile_size, tiles_w, tiles_h, tile_start, tile_count, sorted_ids, pixel_xy, inside,
                    n)


@dataclass
class Chunk:
    """One step: the active tiles and the list positions [pos, pos + size) they process."""

    tiles: torch.Tensor  # (A,) tile indices
    pos: int
    size: int
    transmittance_in: torch.Tensor  # (A, P)
    done_in: torch.Tensor  # (A, P) bool


def chunk_ids(plan: TilePlan, tiles: torch.Tensor, pos: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, C) Gaussian ids of a chunk (clamped to a valid id) and whether each entry exists."""
    offs = pos + torch.arange(size, device=tiles.device)
    exists = offs[None, :] < plan.tile_count[tiles][:, None]
    flat = (plan.tile_start[tiles][:, None] + offs[None, :]).clamp(max=max(plan.sorted_ids.numel() - 1, 0))
    ids = plan.sorted_ids[flat] if plan.sorted_ids.numel() else torch.zeros_like(flat)
    return ids, exists


def _alphas(pixel_xy, means2d, conics, opacities, exists, alpha_clamp):
    """alpha = min(clamp, o exp(-sigma)), sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2, per (tile, pixel,
    Gaussian); skipped entries 0. Also returns the unclamped o exp(-sigma) and the offsets
    dx, dy, all (A, P, C) and contiguous (strided operands slow every elementwise op)."""
    dx = pixel_xy[:, :, None, 0] - means2d[:, None, :, 0]
    dy = pixel_xy[:, :, None, 1] - means2d[:, None, :, 1]
    a, b, c = conics[:, None, :, 0], conics[:, None, :, 1], conics[:, None, :, 2]
    sigma = (dx * (0.5 * a)).addcmul_(dy, b).mul_(dx).addcmul_(dy * (0.5 * c), dy)
    # Clamped: exp of arguments below ~-88 (float32 underflow) runs ~40x slower on CPU, and any
    # sigma > ln(255) already gives alpha < 1/255 (opacity <= 1), which is skipped.
    opacities = torch.where(exists, opacities, 0.0)  # padding entries: alpha 0, skipped
    gauss = torch.exp(sigma.clamp(max=SIGMA_SKIP).neg_()).mul_(opacities[:, None, :])
    keep = (sigma >= 0) & (gauss >= ALPHA_MIN)
    alpha = torch.where(keep, gauss.clamp(max=alpha_clamp), 0.0)
    return alpha, gauss, dx, dy


def _transmittance(alpha, transmittance_in, done_in):
    """Relative transmittances (T / T_in) before each Gaussian, inclusion mask, and the outputs.

    A pixel stops (exclusively) at the first Gaussian that would take T to <= 1e-4, as in
    gsplat. T only falls along the chunk, so the included Gaussians are a prefix and the
    transmittance before each of them is the plain running product: one cumprod.
    """
    t_incl_rel = torch.cumprod(1.0 - alpha, dim=-1)
    live_in = torch.where(done_in, 0.0, transmittance_in)  # a stopped pixel takes nothing more
    include = live_in[..., None] * t_incl_rel > T_STOP
    t_before = torch.cat([torch.ones_like(t_incl_rel[..., :1]), t_incl_rel], dim=-1)  # (A, P, C + 1)
    t_out_rel = t_before.gather(-1, include.sum(-1, keepdim=True))[..., 0]  # after the last included
    done_out = done_in | (transmittance_in * t_incl_rel[..., -1] <= T_STOP)
    return t_before[..., :-1], include, t_out_rel, done_out


def blend_weights(pixel_xy: torch.Tensor, means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor,
                  exists: torch.Tensor, transmittance_in: torch.Tensor, done_in: torch.Tensor, alpha_clamp: float):
    """Blending weights w = alpha * T of one chunk, front to back, with gsplat's rules.

    Args: pixel_xy (A, P, 2); means2d (A, C, 2); conics (A, C, 3); opacities (A, C);
    exists (A, C); transmittance_in, done_in (A, P).
    Returns w (A, P, C), transmittance_out (A, P), done_out (A, P).
    """
    alpha, _, _, _ = _alphas(pixel_xy, means2d, conics, opacities, exists, alpha_clamp)
    t_excl_rel, include, t_out_rel, done_out = _transmittance(alpha, transmittance_in, done_in)
    w = torch.where(include, (alpha * t_excl_rel).mul_(transmittance_in[..., None]), 0.0)
    return w, transmittance_in * t_out_rel, done_out


def blend_backward(pixel_xy, means2d, conics, opacities, features, exists, transmittance_in, done_in, alpha_clamp,
                   grad_out, grad_t_out):
    """Hand-derived gradients of one chunk of ``contrib = sum_c w_c f_c`` and ``T_out``.

    With gw_c = <dL/dcontrib, f_c> and S_c = sum_{k>c} gw_k w_k (a reverse cumsum):
        dL/dalpha_c = gw_c T_c - (S_c + dL/dT_out * T_out) / (1 - alpha_c)
        dL/dT_in    = sum_c gw_c alpha_c T_c / T_in + dL/dT_out * T_out / T_in (computed relative to T_in)
    then the chain through alpha = min(clamp, o exp(-sigma)) and sigma(dx, dy, conic).
    Returns grads for means2d (A, C, 2), conics (A, C, 3), opacities (A, C), features (A, C, F), T_in (A, P).
    """
    alpha, gauss, dx, dy = _alphas(pixel_xy, means2d, conics, opacities, exists, alpha_clamp)
    t_excl_rel, include, t_out_rel, _ = _transmittance(alpha, transmittance_in, done_in)
    alpha = torch.where(include, alpha, 0.0)
    w_rel = alpha * t_excl_rel  # w / T_in
    t_in = transmittance_in[..., None]
    grad_f = torch.einsum("apc,apf->acf", w_rel * t_in, grad_out)
    gw = torch.einsum("apf,acf->apc", grad_out, features)
    gww = gw * w_rel
    tail = gww.flip(-1).cumsum(-1).flip(-1) - gww  # S_c / T_in
    final = (grad_t_out * t_out_rel)[..., None]  # dL/dT_out * T_out / T_in
    grad_t_in = gww.sum(-1) + final[..., 0]
    grad_alpha = t_in * (gw * t_excl_rel - (tail + final) / (1.0 - alpha))
    # alpha = o * exp(-sigma) where included and not clamped
    free = include & (alpha > 0) & (gauss < alpha_clamp)
    g_sigma = torch.where(free, grad_alpha, 0.0).mul_(gauss).neg_()  # dL/dsigma = -dL/dalpha * alpha
    grad_o = -g_sigma.sum(1) / opacities.clamp_min(1e-30)  # dalpha/do = alpha / o
    gs_dx, gs_dy = g_sigma * dx, g_sigma * dy
    grad_conic = torch.stack([0.5 * (gs_dx * dx).sum(1), (gs_dx * dy).sum(1), 0.5 * (gs_dy * dy).sum(1)], -1)
    # dx = px - mx: dsigma/dmx = -(a dx + b dy), dsigma/dmy = -(b dx + c dy); a, b, c are constant
    # over the pixels, so the pixel sums come first
    sx, sy = gs_dx.sum(1), gs_dy.sum(1)
    a, b, c = conics[..., 0], conics[..., 1], conics[..., 2]
    grad_m = torch.stack([-(a * sx + b * sy), -(b * sx + c * sy)], -1)
    return grad_m, grad_conic, grad_o, grad_f, grad_t_in


class ChunkLoop:
    """The tile loop. Iterate to get chunks; call :meth:`update` with each chunk's result.

    Holds the running transmittance ``T`` and ``done`` flags of every tile pixel.
    """

    def __init__(self, plan: TilePlan, budget: int = DEFAULT_CHUNK_BUDGET):
        self.plan, self.budget = plan, budget
        self.T = torch.ones(plan.num_tiles, plan.pixels_per_tile, dtype=plan.pixel_xy.dtype, device=plan.pixel_xy.device)
        self.done = ~plan.pixel_inside.clone()
        self._pending: Chunk | None = None

    def __iter__(self):
        plan = self.plan
        active = torch.nonzero(plan.tile_count > 0).flatten()
        pos = 0
        while active.numel():
            a = active.numel()
            remaining = int(plan.tile_count[active].max()) - pos
            size = max(1, min(remaining, self.budget // (a * plan.pixels_per_tile)))
            self._pending = Chunk(active, pos, size, self.T[active], self.done[active])
            yield self._pending
            if self._pending is not None:
                raise RuntimeError("ChunkLoop: update() was not called for the last chunk")
            pos += size
            still = (plan.tile_count[active] > pos) & ~self.done[active].all(dim=1)
            active = active[still]

    def update(self, transmittance_out: torch.Tensor, done_out: torch.Tensor) -> None:
        chunk = self._pending
        assert chunk is not None
        self.T[chunk.tiles] = transmittance_out
        self.done[chunk.tiles] = done_out
        self._pending = None
