"""Jacobian similarity without materialising Jacobians (docs/method.md §4).

For output channel c of a branch with perturbable weight W (z = W a + b):
    J_i = delta_i a_i^T,  Jbar_S = mean_{i in S} J_i = (1/|S|) delta_S^T a_S   (out x in)
    <J_i, Jbar> = delta_i^T Jbar a_i,   |J_i| = |delta_i| |a_i|
so one query is O(N d^2). Where the scores are cosines of the activations themselves
(structgs.model.activation_cache), a query is one pass over the cached unit activations.
"""

from __future__ import annotations

import torch

from structgs.model.activation_cache import ActivationCache, cacheable


def default_segmentation_branch(model) -> str:
    """``motion`` when present (its perturbable layer is the linear output layer, so delta is
    constant and the score is exactly cos(a_i, mean a_S)); else ``opacity``."""
    branches = model.decoder.branches
    return "motion" if "motion" in branches else ("opacity" if "opacity" in branches else next(iter(branches)))


@torch.no_grad()
def mean_jacobian(delta: torch.Tensor, a: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """(out, in) Jbar_S = mean over S of delta_i a_i^T."""
    return delta[selection].T @ a[selection] / selection.sum()


@torch.no_grad()
def jacobian_cosine(model, selection: torch.Tensor, branch: str | None = None, channel: int = 0,
                    view: torch.Tensor | None = None, chunk: int = 262144, use_cache: bool = True) -> torch.Tensor:
    """(N,) cos(J_i, Jbar_S) for every Gaussian (from the activation cache where the scores are
    activation cosines, unless ``use_cache`` is False)."""
    branch = branch or default_segmentation_branch(model)
    n = model.num_gaussians
    sel = selection.to(model.device)
    if sel.shape != (n,) or not bool(sel.any()):
        raise ValueError(f"selection must be a non-empty boolean mask of shape ({n},)")
    idx_sel = torch.nonzero(sel).flatten()
    cache = activation_cache(model, branch) if view is None and use_cache else None
    if cache is not None:  # only row `channel` of Jbar is non-zero, sum_S s_j a_j: cos(J_i, Jbar) = cos(a_i, it)
        a_s = cache.activations(idx_sel)
        return cache.cosines(model.decoder.channel_slopes(branch, a_s, channel) @ a_s)
    d_s, a_s = model.output_deltas(branch, channel, index=idx_sel, view=None if view is None else view[idx_sel])
    jbar = d_s.T @ a_s / idx_sel.numel()
    jbar_norm = jbar.norm().clamp_min(1e-30)
    scores = torch.empty(n, device=model.device)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(start + chunk, n), device=model.device)
        d, a = model.output_deltas(branch, channel, index=idx, view=None if view is None else view[idx])
        inner = ((d @ jbar) * a).sum(-1)
        scores[idx] = inner / (d.norm(dim=-1) * a.norm(dim=-1) * jbar_norm).clamp_min(1e-30)
    return scores


def activation_cache(model, branch: str) -> ActivationCache | None:
    """The model's cache of ``branch``'s unit activations, (re)built when missing or stale;
    None where the scores are not activation cosines."""
    if not cacheable(model, branch):
        return None
    caches = model.activation_caches
    cache = caches.get(branch)
    if cache is None or not cache.matches(model):
        cache = caches[branch] = ActivationCache.build(model, branch)
    return cache
