"""k nearest neighbours of centroids with faiss (exact L2; the query point itself comes first)."""

from __future__ import annotations

import numpy as np
import torch

from structgs.utils.errors import InputError, MissingDependencyError


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss is a core dependency
        raise MissingDependencyError("structgs needs faiss for kNN: pip install faiss-cpu (or faiss-gpu)") from e
    return faiss


def _as_f32(points: torch.Tensor, name: str, dim: int | None = 3) -> np.ndarray:
    if points.ndim != 2 or (dim is not None and points.shape[1] != dim):
        raise InputError(f"{name}: expected shape (N, {dim or 'D'}), got {tuple(points.shape)}")
    return np.ascontiguousarray(points.detach().cpu().numpy().astype(np.float32))


def knn_query(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """(M, k) int64 indices into ``points`` (N, D) of the k nearest points to each query (M, D)."""
    d = points.shape[-1]
    index = _faiss().IndexFlatL2(d)
    index.add(_as_f32(points, "points", None))
    _, idx = index.search(_as_f32(queries, "queries", d), min(k, points.shape[0]))
    return torch.from_numpy(idx.astype(np.int64)).to(queries.device)


def knn_indices(points: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) int64 indices of each point's k nearest points (itself included, first)."""
    x = _as_f32(points, "points")
    n = points.shape[0]
    k = min(k, n)
    index = _faiss().IndexFlatL2(3)
    index.add(x)
    _, idx = index.search(x, k)
    out = torch.from_numpy(idx.astype(np.int64))
    # ties at distance 0 (duplicate points) may put another point first: force self first
    self_pos = (out == torch.arange(n)[:, None])
    missing = ~self_pos.any(1)
    out[missing, 0] = torch.arange(n)[missing]
    return out.to(points.device)
