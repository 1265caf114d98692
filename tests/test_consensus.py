"""Consensus association, pair consensus and the noise report on hand-made per-view labels whose
damage is known exactly: merges and splits in a minority of views must not change the objects."""

import torch

from structgs.masks.consensus import (ConsensusConfig, ViewVotes, boundary_band, consensus_labels, noise_report,
                                      vote_tracked)
from structgs.shaping.lifting import matched_accuracy, needs_rest_label
from structgs.shaping.losses import pair_consensus, supervised_infonce


def _noisy_views(views=20, per_object=(150, 120, 90, 60), merge=0.2, split=0.2, flip=0.05, seed=0):
    """(V, N) per-view ids of 4 objects: in each view ids are permuted, the pairs (0, 1) and
    (2, 3) are each merged into one mask with p ``merge``, every object split in two with p
    ``split``, a fraction ``flip`` of labels is random, and 20 % of the Gaussians are unseen.
    Returns labels, truth, and the true number of merges and splits per view."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.cat([torch.full((n,), k) for k, n in enumerate(per_object)])
    K, N = len(per_object), truth.numel()
    labels = torch.full((views, N), -1, dtype=torch.int64)
    merges = splits = 0
    for v in range(views):
        obj_id = torch.randperm(50, generator=g)[:K] + 1
        view_ids = obj_id[truth].clone()
        for k in range(0, K - 1, 2):  # merges of the disjoint pairs (0, 1), (2, 3): one merged mask each
            if float(torch.rand(1, generator=g)) < merge:
                view_ids[truth == k + 1] = obj_id[k]
                merges += 1
        for k in range(K):
            if float(torch.rand(1, generator=g)) < split:
                members = torch.nonzero(truth == k).flatten()
                view_ids[members[: members.numel() // 2]] = 60 + k
                splits += 1
        rand = torch.rand(N, generator=g) < flip
        view_ids[rand] = torch.randint(1, 70, (int(rand.sum()),), generator=g)
        seen = torch.rand(N, generator=g) >= 0.2
        labels[v, seen] = view_ids[seen]
    return labels, truth, merges / views, splits / views


def _votes(labels: torch.Tensor) -> ViewVotes:
    has = labels != -1
    return ViewVotes(labels, has.float(), has.float(), torch.zeros_like(has), has.float())


def test_consensus_recovers_objects_despite_merges_and_splits():
    labels, truth, _, _ = _noisy_views()
    out, conf, info = consensus_labels(_votes(labels), ConsensusConfig(anchors=300))
    assert info["objects"] == 4, info
    assert matched_accuracy(out, truth) >= 0.99
    assert conf.mean() > 0.7 and (out != -1).all()
    # even at merge = split = 0.35 per object and view the minority never wins
    labels, truth, _, _ = _noisy_views(merge=0.35, split=0.35, seed=1)
    out, _, info = consensus_labels(_votes(labels), ConsensusConfig(anchors=300))
    assert info["objects"] == 4 and matched_accuracy(out, truth) >= 0.98


def test_consistent_merge_is_kept_as_one_object():
    # two objects that are one mask in 80 % of the views are, by consensus, one object
    labels, truth, _, _ = _noisy_views(merge=0.0, split=0.0)
    for v in range(16):
        first = labels[v][truth == 0]
        first = first[first != -1][0] if (first != -1).any() else 99
        labels[v][(truth == 1) & (labels[v] != -1)] = first
    out, _, info = consensus_labels(_votes(labels), ConsensusConfig(anchors=300))
    assert info["objects"] == 3
    assert out[truth == 0].mode().values == out[truth == 1].mode().values


def test_noise_report_estimates_merges_and_splits():
    labels, truth, merges, splits = _noisy_views(merge=0.2, split=0.2, flip=0.0)
    names = [f"v{i}" for i in range(labels.shape[0])]
    report = noise_report(labels, truth + 1, torch.ones(truth.numel()), names)
    assert abs(report["merges_per_view"] - merges) < 0.05 and abs(report["splits_per_view"] - splits) < 0.05
    clean, truth, _, _ = _noisy_views(merge=0.0, split=0.0, flip=0.0)
    report = noise_report(clean, truth + 1, torch.ones(truth.numel()), names)
    assert report["merges_per_view"] == 0 and report["splits_per_view"] == 0


def test_tracked_votes_sum_over_views():
    # Gaussian 0: id 3 in two views, id 5 in one; Gaussian 1: "no object" twice, id 5 once
    labels = torch.tensor([[3, -1], [3, -1], [5, 5]])
    on_ignore = torch.tensor([[False, True], [False, True], [False, False]])
    votes = ViewVotes(labels, torch.ones(3, 2), torch.ones(3, 2), on_ignore, torch.ones(3, 2))
    lab, conf = vote_tracked(votes)
    assert lab.tolist() == [3, -1] and torch.allclose(conf, torch.tensor([2 / 3, 2 / 3]))


def test_pair_consensus_distrusts_a_merged_view():
    # objects {0, 1}, {2, 3}, {4, 5}; view 0 merges the first two, views 1-4 are right
    labels = torch.tensor([[7, 7, 7, 7, 2, 2], [1, 1, 2, 2, 3, 3], [4, 4, 3, 3, 1, 1], [9, 9, 8, 8, 7, 7],
                           [5, 5, 6, 6, 4, 4]])
    trusted = pair_consensus(labels, view=0)
    assert trusted[0, 1] and trusted[2, 3] and trusted[0, 4] and not trusted[0, 2] and not trusted[1, 3]
    assert pair_consensus(labels, view=1).all()
    # without the distrusted pairs, the merged view's InfoNCE no longer pulls objects 0 and 1 together
    feats = torch.tensor([[1.0, 0, 0], [1, 0.1, 0], [0, 1, 0], [0.1, 1, 0], [0, 0, 1], [0, 0.1, 1]])
    assert supervised_infonce(feats, labels[0], 0.1, trusted) < 0.05
    assert supervised_infonce(feats, labels[0], 0.1) > 0.3


def test_boundary_band_and_rest_label_rule():
    ids = torch.zeros(10, 10, dtype=torch.int64)
    ids[:, 5:] = 3
    band = boundary_band(ids, 1)
    assert band[:, 4:6].all() and not band[:, :4].any() and not band[:, 6:].any()
    assert not boundary_band(ids, 0).any()
    one = [ids, ids.clone()]
    assert needs_rest_label(one, 0)
    two = ids.clone()
    two[:2, :2] = 4
    assert not needs_rest_label([ids, two], 0)
    assert not needs_rest_label([torch.zeros_like(ids)], 0)  # no id at all: nothing to shape, not "one object"


def test_pair_consensus_counts_as_view_by_view_comparison():
    """The two products over (view, id) columns give the counts of comparing every view's ids
    pair by pair (the definition), on random labels with gaps (-1) and ids reused across views."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (9, 70), generator=g)
    labels[torch.rand(9, 70, generator=g) < 0.4] = -1
    labels[2] = -1  # a view that labels nothing
    has = labels != -1
    same = sum(((lv[:, None] == lv[None, :]) & h[:, None] & h[None, :]).float() for lv, h in zip(labels, has))
    both = sum((h[:, None] & h[None, :]).float() for h in has)
    for view in (0, 2, 8):
        here = labels[view][:, None] == labels[view][None, :]
        want = (both < 3) | (here == (same >= 0.5 * both))
        assert torch.equal(pair_consensus(labels, view), want)
    assert pair_consensus(torch.full((3, 4), -1), 0).all()  # nothing labelled: every pair as the view says
