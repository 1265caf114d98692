"""k nearest neighbours of centroids with faiss (exact L2; the query point itself comes first)."""

from __future__ import annotations

import numpy as np
import torch


def knn_indices(points: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) int64 indices of each point's k nearest points (itself included, first)."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {tuple(points.shape)}")
    n = points.shape[0]
    k = min(k, n)
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss is a core dependency
        raise ImportError("structgs needs faiss for kNN: pip install faiss-cpu (or faiss-gpu)") from e
    x = np.ascontiguousarray(points.detach().cpu().numpy().astype(np.float32))
    index = faiss.IndexFlatL2(3)
    index.add(x)
    _, idx = index.search(x, k)
    out = torch.from_numpy(idx.astype(np.int64))
    # ties at distance 0 (duplicate points) may put another point first: force self first
    self_pos = (out == torch.arange(n)[:, None])
    missing = ~self_pos.any(1)
    out[missing, 0] = torch.arange(n)[missing]
    return out.to(points.device)
