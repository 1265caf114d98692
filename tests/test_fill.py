"""Which lifted labels are trusted, and how the unsure ones are filled (structgs.masks.fill), and
the tracker-free mode's per-view outlier rejection (consensus.membership_support): hand-built
cases whose right answer is known."""

import torch

from structgs.masks.consensus import ConsensusConfig, cluster_anchors, co_membership, membership_support
from structgs.masks.fill import FillConfig, fill_labels, trusted_voters


def _contact_scene():
    """Object 1 (a slab at x in [0, 1], grey) touching object 2 (x in [1, 1.5], red), and a small
    object 3 far away that only two views see. Returns centroids, colours, labels, confidence,
    views, truth. Four Gaussians of object 1 at the contact are seen by one view only, in which
    object 2's dilated mask covers them: label 2, confidence 1."""
    g = torch.Generator().manual_seed(0)
    n1, n2, n3 = 200, 100, 30
    x = torch.cat([torch.rand(n1, generator=g), 1 + 0.5 * torch.rand(n2, generator=g), 5 + 0.1 * torch.rand(n3, generator=g)])
    pts = torch.stack([x, torch.rand(x.numel(), generator=g), torch.zeros_like(x)], 1)
    truth = torch.cat([torch.full((n1,), 1), torch.full((n2,), 2), torch.full((n3,), 3)])
    colors = torch.tensor([[0.5, 0.5, 0.5], [0.8, 0.2, 0.2], [0.2, 0.2, 0.8]])[truth - 1]
    labels, confidence = truth.clone(), torch.ones(x.numel())
    views = torch.where(truth == 3, torch.full_like(truth, 2), torch.full_like(truth, 8))
    contact = torch.nonzero(truth == 1).flatten()[x[:n1].argsort(descending=True)[:4]]
    labels[contact], views[contact] = 2, 1
    return pts, colors, labels, confidence, views, truth, contact


def test_few_view_labels_are_not_trusted_but_rarely_seen_objects_keep_theirs():
    pts, colors, labels, conf, views, truth, contact = _contact_scene()
    voters = trusted_voters(labels, conf, views, min_confidence=0.6, min_views=4)
    assert not voters[contact].any()  # one view's word at a contact
    assert voters[truth == 3].all()  # every Gaussian of object 3 has 2 views: held to 2, not filled away
    assert voters[(truth != 3)].sum() == (truth != 3).sum() - contact.numel()
    low = conf.clone()
    low[:10] = 0.5
    assert not trusted_voters(labels, low, views, 0.6, 4)[:10].any()  # outvoted by too little
    # "no object" won (label -1 with votes) is a class of its own; never seen (no votes) is not
    bg = labels.clone()
    bg[:3] = -1
    seen = views.clone()
    seen[2] = 0
    assert trusted_voters(bg, conf, seen, 0.6, 4)[:3].tolist() == [True, True, False]
    seen[:3] = 2  # ... but it is never held to fewer views: a thin object's eroded rim stays its own
    assert not trusted_voters(bg, conf, seen, 0.6, 4)[:3].any()
    # min_views 1 trusts single views: the contact keeps its wrong label
    assert trusted_voters(labels, conf, views, 0.6, 1)[contact].all()


def test_fill_labels_relabels_the_contact_from_trusted_neighbours():
    pts, colors, labels, conf, views, truth, contact = _contact_scene()
    filled = fill_labels(labels, conf, views, pts, colors, FillConfig(min_views=4, knn=8))
    assert torch.equal(filled, truth)
    unfilled = fill_labels(labels, conf, views, pts, colors, FillConfig(min_views=1, knn=8))
    assert (unfilled[contact] == 2).all()  # trusting one view keeps the error


def test_membership_support_flags_a_dilated_mask():
    # 3 objects of 40 Gaussians, 6 views, ids permuted per view; in view 0 object B's mask is
    # dilated over 5 Gaussians of object A (they take B's id there)
    truth = torch.arange(3).repeat_interleave(40)
    per_view = torch.stack([torch.randperm(3, generator=torch.Generator().manual_seed(v))[truth] + 10 * v
                            for v in range(6)])
    a_edge = torch.arange(5)
    per_view[0, a_edge] = int(per_view[0, 40])  # B's id in view 0
    per_view[3, 100:] = -1  # view 3 does not see object C
    support = membership_support(per_view, torch.arange(120), min_views=3)
    assert (support[0, a_edge] < 0.2).all()  # in view 0 they sit with B's Gaussians, which the other views deny
    others = torch.ones_like(support, dtype=torch.bool)
    others[0, a_edge] = False
    others[3, 100:] = False
    assert (support[others] > 0.8).all()
    assert (support[3, 100:] == -1).all()  # no label in that view: no evidence


def test_clusters_join_the_parts_of_an_object_that_few_views_show_together():
    # object A: parts A1, A2 that only views 0 and 1 show together (same id there); each part is
    # seen alone by 4 more views. Object B: seen with A1 in 6 views, always a different id
    V = 10
    a1, a2, b = torch.arange(0, 20), torch.arange(20, 40), torch.arange(40, 70)
    labels = torch.full((V, 70), -1)
    for v in range(V):
        labels[v, b] = 100 + v
        if v < 2:
            labels[v, a1], labels[v, a2] = v, v
        elif v < 6:
            labels[v, a1] = v
        else:
            labels[v, a2] = v
            labels[v, b] = -1
    same, both = co_membership(labels)
    cluster = cluster_anchors(same, both, ConsensusConfig(min_views=3))
    assert (cluster[a1] == cluster[a1][0]).all() and (cluster[a2] == cluster[a1][0]).all()  # A is one object
    assert (cluster[b] == cluster[b][0]).all() and cluster[b][0] != cluster[a1][0]
    # two parts that some views show together but with different ids stay apart
    labels[0, a2], labels[1, a2] = 50, 51
    same, both = co_membership(labels)
    cluster = cluster_anchors(same, both, ConsensusConfig(min_views=3))
    assert cluster[a1][0] != cluster[a2][0]
