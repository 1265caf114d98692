"""Choosing the pool of Gaussians a shaping run touches."""

from __future__ import annotations

import torch


def farthest_point_sample(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of k points by iterative farthest-point sampling (O(N k), on the points' device)."""
    n = points.shape[0]
    k = min(k, n)
    chosen = torch.empty(k, dtype=torch.int64, device=points.device)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    dist = (points - points[chosen[0]]).pow(2).sum(-1)
    for i in range(1, k):
        chosen[i] = torch.argmax(dist)
        dist = torch.minimum(dist, (points - points[chosen[i]]).pow(2).sum(-1))
    return chosen


def sample_pool(points: torch.Tensor, fraction: float, method: str, generator: torch.Generator) -> torch.Tensor:
    n = points.shape[0]
    k = max(2, int(round(fraction * n)))
    if method == "fps":
        return farthest_point_sample(points, k, generator).sort().values
    return torch.randperm(n, generator=generator)[:k].sort().values.to(points.device)
