"""Exact kNN (k-d tree for low dimensions, faiss beyond) against brute force."""

import pytest
import torch

from structgs.utils.knn import KD_TREE_MAX_DIM, knn_indices, knn_query


def _points(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[n // 2: n // 2 + 20] = x[:20]  # exact duplicates: ties at distance 0
    return x


@pytest.mark.parametrize("d", [3, 6, KD_TREE_MAX_DIM + 4])  # tree, tree, faiss
def test_knn_query_is_exact(d):
    pts, q = _points(3000, d, 0), _points(500, d, 1)
    k = 9
    idx = knn_query(q, pts, k)
    assert idx.shape == (500, k) and idx.dtype == torch.int64
    dist = torch.cdist(q.double(), pts.double())
    exact = dist.topk(k, largest=False).values
    got = dist.gather(1, idx)
    assert torch.allclose(got, exact, atol=1e-5)  # the same distances, nearest first
    assert (idx.sort(1).values[:, 1:] != idx.sort(1).values[:, :-1]).all()  # no point twice
    assert knn_query(q[:3], pts[:4], 10).shape == (3, 4)  # k capped at the number of points


def test_knn_indices_put_each_point_first_even_with_duplicates():
    pts = _points(2000, 3, 2)
    idx = knn_indices(pts, 5)
    assert (idx[:, 0] == torch.arange(2000)).all()
    dup = torch.arange(1000, 1020)
    assert (idx[dup, 1] == dup - 1000).all()  # its duplicate is its nearest other point
    dist = torch.cdist(pts.double(), pts.double())
    assert torch.allclose(dist.gather(1, idx)[:, 1:], dist.topk(5, largest=False).values[:, 1:], atol=1e-6)
