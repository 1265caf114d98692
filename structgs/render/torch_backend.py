"""Pure-PyTorch rasterizer (CPU or GPU): the reference backend.

Blending runs in a custom autograd Function: the forward keeps only each chunk's incoming
transmittance; the backward walks the chunks back to front and recomputes each one under
autograd, so memory stays bounded by one chunk whatever the number of Gaussians.

Gradient of a chunk (k): out = sum_k contrib_k + T_final * bg, T_{k+1} = f_k(T_k, params), so
dL/dT_k = (dL/dcontrib_k) dcontrib_k/dT_k + (dL/dT_{k+1}) dT_{k+1}/dT_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structgs.utils.log import get_logger
from structgs.render.tiles import (DEFAULT_CHUNK_BUDGET, ChunkLoop, TilePlan, blend_backward,
                                   blend_weights, chunk_ids)

log = get_logger("render")


_COMPILED: dict[str, object] = {}
"""This process's compiled kernels (compiled once, on first use), and whether compiling failed."""


def _kernels(compile_kernels: bool):
    """(blend_weights, blend_backward), optionally torch.compile'd (lazily, once per process).

    Compiling costs ~30 s on first use (~8 s with inductor's cache warm); since the 8x8 work
    tiles it makes forward + backward at most ~1.25x faster on CPU (20k Gaussians; no faster at
    30k-100k, benchmarks/render.py). torch.compile fails only when a
    kernel first runs (no C++ compiler, an unsupported platform): then this warns once and uses
    the eager kernels for the rest of the process.
    """
    if not compile_kernels or _COMPILED.get("failed"):
        return blend_weights, blend_backward
    if "pair" not in _COMPILED:
        _COMPILED["pair"] = tuple(_eager_on_failure(torch.compile(fn, dynamic=True), fn)
                                  for fn in (blend_weights, blend_backward))
    return _COMPILED["pair"]


def _eager_on_failure(compiled, eager):
    def run(*args):
        if not _COMPILED.get("failed"):
            try:
                return compiled(*args)
            except Exception as e:  # the toolchain's error, whatever its type
                first_line = (str(e).strip().splitlines() or [""])[0]
                log.warning("torch.compile of the rasterizer's kernels failed (%s: %s); using the eager "
                            "kernels", type(e).__name__, first_line)
                _COMPILED["failed"] = True
        return eager(*args)

    return run


def _gather(plan: TilePlan, chunk, means2d, conics, opacities, features):
    ids, exists = chunk_ids(plan, chunk.tiles, chunk.pos, chunk.size)
    return ids, exists, means2d[ids], conics[ids], opacities[ids], (None if features is None else features[ids])


class _BlendFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, features, plan: TilePlan, alpha_clamp: float, budget: int,
                compile_kernels: bool):
        weights_fn, _ = _kernels(compile_kernels)
        loop = ChunkLoop(plan, budget)
        out = features.new_zeros(plan.num_tiles, plan.pixels_per_tile, features.shape[1])
        chunks = []
        for chunk in loop:
            _, exists, m, c, o, f = _gather(plan, chunk, means2d, conics, opacities, features)
            w, t_out, done_out = weights_fn(plan.pixel_xy[chunk.tiles], m, c, o, exists, chunk.transmittance_in,
                                            chunk.done_in, alpha_clamp)
            out[chunk.tiles] += torch.einsum("apc,acf->apf", w, f)
            loop.update(t_out, done_out)
            chunks.append(chunk)
        ctx.plan, ctx.alpha_clamp, ctx.chunks, ctx.compile_kernels = plan, alpha_clamp, chunks, compile_kernels
        ctx.save_for_backward(means2d, conics, opacities, features)
        return out, loop.T.clone()

    @staticmethod
    def backward(ctx, grad_out, grad_T):
        means2d, conics, opacities, features = ctx.saved_tensors
        plan: TilePlan = ctx.plan
        _, backward_fn = _kernels(ctx.compile_kernels)
        grads = [torch.zeros_like(t) for t in (means2d, conics, opacities, features)]
        grad_T = (grad_T if grad_T is not None else torch.zeros_like(plan.pixel_xy[..., 0])).clone()
        if grad_out is None:
            grad_out = features.new_zeros(plan.num_tiles, plan.pixels_per_tile, features.shape[1])
        for chunk in reversed(ctx.chunks):
            ids, exists, m, c, o, f = _gather(plan, chunk, means2d, conics, opacities, features)
            g_m, g_c, g_o, g_f, g_t = backward_fn(plan.pixel_xy[chunk.tiles], m, c, o, f, exists,
                                                     chunk.transmittance_in, chunk.done_in, ctx.alpha_clamp,
                                                     grad_out[chunk.tiles], grad_T[chunk.tiles])
            flat, ok = ids.reshape(-1), exists.reshape(-1)
            for g, part in zip(grads, (g_m, g_c, g_o, g_f)):
                g.index_add_(0, flat[ok], part.reshape(flat.numel(), *part.shape[2:])[ok])
            grad_T[chunk.tiles] = g_t
        return (*grads, None, None, None, None)


def blend(plan: TilePlan, means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor,
          features: torch.Tensor, alpha_clamp: float = 0.999, budget: int = DEFAULT_CHUNK_BUDGET,
          compile_kernels: bool = False):
    """Alpha-blend ``features`` (N, F). Returns (H, W, F) accumulated features and (H, W) final T."""
    out, T = _BlendFunction.apply(means2d, conics, opacities, features, plan, alpha_clamp, budget, compile_kernels)
    return plan.to_image(out), plan.to_image(T)


@dataclass
class Contributions:
    """Who contributes where, for one view (see :func:`structgs.render.contributions`).

    Attributes:
        gaussian_max_weight: (N,) max over pixels of alpha*T (0 if the Gaussian never contributes).
        gaussian_max_pixel: (N,) flat index y*W+x of that pixel (-1 if it never contributes).
        pixel_top_gaussian: (H, W) id of the Gaussian with the largest alpha*T (-1 if none).
        pixel_top_weight: (H, W) that weight.
        weight_sum: (N,) sum over pixels of alpha*T.
        weighted_sums: (N, K) sum over pixels of pixel_weights[p, k] * alpha*T, if asked for.
    """

    gaussian_max_weight: torch.Tensor
    gaussian_max_pixel: torch.Tensor
    pixel_top_gaussian: torch.Tensor
    pixel_top_weight: torch.Tensor
    weight_sum: torch.Tensor
    weighted_sums: torch.Tensor | None


@torch.no_grad()
def contributions_from_plan(plan: TilePlan, means2d, conics, opacities, alpha_clamp: float = 0.999,
                            pixel_weights: torch.Tensor | None = None,
                            budget: int = DEFAULT_CHUNK_BUDGET) -> Contributions:
    n, device, dtype = plan.num_gaussians, means2d.device, means2d.dtype
    g_max = torch.zeros(n, dtype=dtype, device=device)
    g_pix = torch.full((n,), -1, dtype=torch.int64, device=device)
    g_sum = torch.zeros(n, dtype=dtype, device=device)
    p_top = torch.full((plan.num_tiles, plan.pixels_per_tile), -1, dtype=torch.int64, device=device)
    p_w = torch.zeros(plan.num_tiles, plan.pixels_per_tile, dtype=dtype, device=device)
    tile_pw = None
    g_wsum = None
    if pixel_weights is not None:
        tile_pw = plan.from_image(pixel_weights.to(dtype))
        g_wsum = torch.zeros(n, tile_pw.shape[-1], dtype=dtype, device=device)
    pix_index = plan.pixel_index()
    loop = ChunkLoop(plan, budget)
    for chunk in loop:
        ids, exists, m, c, o, _ = _gather(plan, chunk, means2d, conics, opacities, None)
        w, t_out, done_out = blend_weights(plan.pixel_xy[chunk.tiles], m, c, o, exists, chunk.transmittance_in,
                                           chunk.done_in, alpha_clamp)
        loop.update(t_out, done_out)
        w = torch.where(exists[:, None, :], w, torch.zeros_like(w))
        # per pixel: the top Gaussian so far
        wmax, arg = w.max(dim=-1)
        better = wmax > p_w[chunk.tiles]
        p_w[chunk.tiles] = torch.where(better, wmax, p_w[chunk.tiles])
        p_top[chunk.tiles] = torch.where(better, torch.gather(ids, 1, arg), p_top[chunk.tiles])
        # per Gaussian: max weight and its pixel, and sums
        gmax, gp = w.max(dim=1)  # (A, C)
        flat_ids, flat_max = ids[exists], gmax[exists]
        flat_pix = torch.gather(pix_index[chunk.tiles], 1, gp)[exists]
        g_max.scatter_reduce_(0, flat_ids, flat_max, reduce="amax")
        winner = (flat_max >= g_max[flat_ids]) & (flat_max > 0)
        g_pix[flat_ids[winner]] = flat_pix[winner]
        g_sum.index_add_(0, flat_ids, w.sum(dim=1)[exists])
        if tile_pw is not None:
            ws = torch.einsum("apc,apk->ack", w, tile_pw[chunk.tiles])
            g_wsum.index_add_(0, flat_ids, ws[exists])
    return Contributions(g_max, g_pix, plan.to_image(p_top), plan.to_image(p_w), g_sum, g_wsum)
