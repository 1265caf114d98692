"""Mask evidence that no single pixel or view decides: multi-view votes, consensus association,
per-Gaussian confidence and an estimate of how noisy the masks were.

Real automatic masks (SAM, SAM 2) merge touching objects, split others, jitter boundaries and
use ids that mean nothing across views. Three pieces make the lifting survive that:

* **Votes, not a best pixel** (``view_votes``). In each view every Gaussian votes for the
  mask ids of *all* the pixels it contributes to, weighted by its blending weight alpha*T
  (the masked-gradient vote of the voting paper, one channel per id); pixels within ``band``
  pixels of an id change, where boundary jitter makes the id unreliable, do not vote (a
  Gaussian seen only there gets no vote from the view; letting those pixels vote at a tenth of
  the weight, or only for such Gaussians, lowered the accuracy on SAM-like masks). A view's
  label of a Gaussian is its winning id there; its confidence the winner's share.
* **Association by consensus** (``consensus_labels``). Two Gaussians belong together when
  they share a mask in most views that label both (co-membership, counted on a sample of
  anchor Gaussians). A mask that merges two objects in one view, or splits one, is a
  minority of those views: it lowers a co-membership rate to ~0.9 or raises one to ~0.1,
  never across 1/2. Anchors are grouped by average linkage on the pooled rate (a cluster
  pair merges while the rate over all their co-visible pairs is >= 1/2), which, unlike
  chaining mutual-best matches, one bad mask cannot merge. Every Gaussian then takes the
  global id its views vote for: view v's id k votes for each cluster with the share of that
  cluster's anchors it covers in v (a merged mask votes fully for both objects, a tie the
  other views break), weighted by the Gaussian's confidence there.
* **A noise report** (``noise_report``): per view, masks whose Gaussians fall into two
  consensus objects (merges) and consensus objects cut across two masks (splits), and the
  distribution of per-Gaussian confidence, so a user knows when to distrust the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from structgs.render.api import contributions
from structgs.utils.indexing import add_at
from structgs.utils.log import get_logger

log = get_logger("masks")
UNLABELLED = -1
REST = 0  # label of "everything outside the masks" when that is the negative class (one-object masks)


@dataclass
class ViewVotes:
    """Per-view evidence of the training views (V views, N Gaussians)."""

    labels: torch.Tensor
    """(V, N) int64: the winning mask id of each Gaussian in each view; -1 where the view gives
    no vote (the Gaussian is not seen, only seen inside the boundary band, or the winner is the
    ignore id -- ``on_ignore`` tells these apart)."""
    confidence: torch.Tensor
    """(V, N) float: the winner's share of the Gaussian's vote weight in the view (0 without vote)."""
    weight: torch.Tensor
    """(V, N) float: the Gaussian's vote weight in the view (sum of alpha*T outside the band)."""
    on_ignore: torch.Tensor
    """(V, N) bool: the Gaussian votes in the view and the ignore id wins ("no object" there)."""
    max_weight: torch.Tensor
    """(V, N) float: the Gaussian's largest blending weight in the view (its visibility)."""

    @property
    def voted(self) -> torch.Tensor:
        """(V, N) bool: the view has a vote on the Gaussian (an id or "no object")."""
        return (self.labels != UNLABELLED) | self.on_ignore


class FixedGaussians:
    """A pre-trained 3DGS in the interface ``view_votes`` reads from a fitted model."""

    def __init__(self, gaussians):
        self.gaussians = gaussians.detach()

    @property
    def num_gaussians(self) -> int:
        return len(self.gaussians)

    @property
    def device(self) -> torch.device:
        return self.gaussians.means.device

    def geometry_by_view(self):
        """``camera -> geometry``: the same Gaussians for every view."""
        return lambda camera: self.gaussians


def boundary_band(ids: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool: pixels within ``radius`` pixels of a change of id (0 counts as an id)."""
    if radius <= 0:
        return torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    f = ids[None, None].float()
    k = 2 * radius + 1
    return (F.max_pool2d(f, k, 1, radius) != -F.max_pool2d(-f, k, 1, radius))[0, 0]


@torch.no_grad()
def view_votes(model, cameras, masks: list[torch.Tensor], ignore_id: int | None = 0, band: int = 2,
               min_weight: float = 0.05, rest_label: bool = False, progress: bool = True) -> ViewVotes:
    """Every Gaussian's vote in every view (module docstring). ``model``: anything with
    ``num_gaussians``, ``device`` and ``geometry_by_view()`` (a ``camera -> geometry`` function)
    giving means / quats / scales / opacities (a fitted SceneModel, or FixedGaussians for a PLY). ``rest_label``: Gaussians on the
    ignore id take the label REST (0) instead of no label (the negative class of one-object masks)."""
    V, N = len(cameras), model.num_gaussians
    dev = model.device
    labels = torch.full((V, N), UNLABELLED, dtype=torch.int64, device=dev)
    conf = torch.zeros(V, N, device=dev)
    weight = torch.zeros(V, N, device=dev)
    on_ignore = torch.zeros(V, N, dtype=torch.bool, device=dev)
    max_w = torch.zeros(V, N, device=dev)
    geometry = model.geometry_by_view()  # decoded once for every view unless it depends on the view
    for v, (cam, m) in enumerate(tqdm(list(zip(cameras, masks)), desc="voting masks onto Gaussians",
                                      disable=not progress, leave=False)):
        m = m.to(dev).long()
        ids = [int(k) for k in m.unique() if ignore_id is None or int(k) != ignore_id]
        channel = torch.zeros_like(m)  # channel 0: the ignore id; 1..K: the view's ids
        for c, k in enumerate(ids, start=1):
            channel[m == k] = c
        keep = (~boundary_band(m, band)).float()
        onehot = F.one_hot(channel, len(ids) + 1).float() * keep[..., None]
        s = geometry(cam)
        con = contributions(s.means, s.quats, s.scales, s.opacities, cam, pixel_weights=onehot)
        sums = con.weighted_sums  # (N, K + 1)
        total = sums.sum(1)
        best = sums.argmax(1)
        seen = (con.gaussian_max_weight >= min_weight) & (total > 0)
        id_of = torch.tensor([REST if rest_label else UNLABELLED] + ids, dtype=torch.int64, device=dev)
        labels[v] = torch.where(seen, id_of[best], torch.full_like(best, UNLABELLED))
        on_ignore[v] = seen & (best == 0) & (not rest_label)
        conf[v] = torch.where(seen, sums.gather(1, best[:, None])[:, 0] / total.clamp_min(1e-12), torch.zeros_like(total))
        weight[v] = torch.where(seen, total, torch.zeros_like(total))
        max_w[v] = con.gaussian_max_weight
    return ViewVotes(labels, conf, weight, on_ignore, max_w)


def vote_tracked(votes: ViewVotes) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and confidence from ids that are consistent across views: each view adds the
    Gaussian's vote weight times its confidence to its winning id (or to "no object")."""
    lab, w = votes.labels, votes.weight * votes.confidence
    ids = sorted(int(k) for k in lab.unique() if k != UNLABELLED)
    N = lab.shape[1]
    score = torch.zeros(N, len(ids) + 1, device=lab.device)  # column 0: "no object"
    col = {k: c for c, k in enumerate(ids, start=1)}
    for v in range(lab.shape[0]):
        index = torch.zeros_like(lab[v])
        for k, c in col.items():
            index[lab[v] == k] = c
        has = (lab[v] != UNLABELLED) | votes.on_ignore[v]
        add_at(score, torch.nonzero(has).flatten(), index[has], w[v][has])
    return _decide(score, torch.tensor([UNLABELLED] + ids, device=lab.device))


def _decide(score: torch.Tensor, id_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax of (N, C) scores -> (labels, confidence); no score at all -> unlabelled, 0."""
    total = score.sum(1)
    best = score.argmax(1)
    labels = torch.where(total > 0, id_of[best], torch.full_like(best, UNLABELLED))
    conf = torch.where(total > 0, score.gather(1, best[:, None])[:, 0] / total.clamp_min(1e-12), torch.zeros_like(total))
    return labels, conf


@dataclass(frozen=True)
class ConsensusConfig:
    """Thresholds of the consensus association."""

    anchors: int = 1500
    """Gaussians sampled to measure co-membership (M x M matrices; average linkage costs ~M^3/3)."""
    min_views: int = 3
    """Anchors and anchor pairs need at least this many views labelling them."""
    join: float = 0.5
    """Clusters merge while their pooled co-membership rate is at least this."""
    min_cluster: float = 0.002
    """Clusters with fewer anchors than this fraction of them (and never fewer than 3) are
    dissolved: their Gaussians take the object their views vote for among the other clusters."""
    seed: int = 0
    """Seed of the anchor draw."""


def sample_anchors(labels: torch.Tensor, cfg: ConsensusConfig) -> torch.Tensor:
    """(M,) Gaussian indices, M <= cfg.anchors: a seeded draw among those that at least
    ``cfg.min_views`` views label. labels: (V, N) per-view ids (-1: none)."""
    cand = torch.nonzero(((labels != UNLABELLED).sum(0) >= cfg.min_views).cpu()).flatten()
    g = torch.Generator().manual_seed(cfg.seed)
    return cand[torch.randperm(cand.numel(), generator=g)[: cfg.anchors]].to(labels.device)


def co_membership(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, M) number of views in which two Gaussians have the same id, and in which both have an id.

    labels: (V, M) per-view ids (-1: no id in that view)."""
    V, M = labels.shape
    has = (labels != UNLABELLED).float()
    same = torch.zeros(M, M, device=labels.device)
    for v in range(V):
        ids, inv = labels[v].unique(return_inverse=True)
        onehot = F.one_hot(inv, ids.numel()).float() * has[v][:, None]
        same += onehot @ onehot.T
    return same, has.T @ has


@torch.no_grad()
def membership_support(per_view: torch.Tensor, anchors: torch.Tensor, min_views: int = 3,
                       chunk: int = 8192) -> torch.Tensor:
    """(V, N) how much the other views support each Gaussian's mask in each view (-1: no evidence).

    For Gaussian i with id k in view v, its mates are the anchors with id k in v; the support
    is the pooled rate at which i shares an id with those mates in the *other* views,
    sum(same - 1) / sum(both - 1) over the mates (view v itself removed from both counts),
    counting only mates that at least ``min_views`` views label together with i. A Gaussian a
    dilated mask of a touching object covers in one view has mates of that other object and a
    support near 0; the smaller object inside a merged mask has mostly the larger one's mates.
    Only same / different relations within a view are counted: ids never cross views.

    per_view: (V, N) per-view ids (-1: none); anchors: (M,) Gaussian indices.
    """
    V, N = per_view.shape
    has = (per_view != UNLABELLED).float()
    lab_a, has_a = per_view[:, anchors], has[:, anchors]
    support = torch.full((V, N), -1.0, device=per_view.device)
    def mates_in(v: int, lab: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # (n, M): same id in view v
        return ((lab[v][:, None] == lab_a[v][None, :]) & (h[v][:, None] > 0) & (has_a[v][None, :] > 0)).float()

    for start in range(0, N, chunk):
        sl = slice(start, min(start + chunk, N))
        lab, h = per_view[:, sl], has[:, sl]
        same = sum(mates_in(v, lab, h) for v in range(V))  # (n, M)
        both = h.T @ has_a  # (n, M): views labelling both
        known = (both >= min_views).float()
        for v in range(V):
            mates = mates_in(v, lab, h) * known
            num = (mates * (same - 1)).sum(1)
            den = (mates * (both - 1)).sum(1)
            support[v, sl] = torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, -1.0))
    return support


def _average_linkage(s_co: np.ndarray, s_both: np.ndarray, members: list[list[int]], join: float,
                     allowed: np.ndarray | None = None, min_both: float = 0.0) -> list[list[int]]:
    """Merge clusters (rows of the pooled (C, C) sums) while the best pooled rate
    s_co / (s_both + 1) is >= ``join``; ``allowed`` (C, C) bool restricts which pairs may merge
    (merged clusters keep the union's rights), ``min_both`` asks the pair that much evidence."""
    s_co, s_both = s_co.copy(), s_both.copy()
    C = len(members)
    ok = np.ones((C, C), dtype=bool) if allowed is None else allowed.copy()
    members = [list(m) for m in members]
    alive = np.ones(C, dtype=bool)

    def rates(a: int) -> np.ndarray:
        r = np.where(alive & ok[a] & (s_both[a] >= min_both), s_co[a] / (s_both[a] + 1.0), -1.0)
        r[a] = -1.0
        return r

    rate = np.stack([rates(a) for a in range(C)]) if C else np.zeros((0, 0))
    while alive.sum() > 1:
        flat = int(rate.argmax())
        a, b = divmod(flat, C)
        if rate[a, b] < join:
            break
        s_co[a] += s_co[b]
        s_co[:, a] += s_co[:, b]
        s_both[a] += s_both[b]
        s_both[:, a] += s_both[:, b]
        ok[a] &= ok[b]
        ok[:, a] = ok[a]
        alive[b] = False
        rate[b] = -1.0
        rate[:, b] = -1.0
        rate[a] = rates(a)
        rate[:, a] = rate[a]
        members[a] += members[b]
        members[b] = []
    return [m for m, keep in zip(members, alive) if keep]


def _pool(matrix: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """(C, C) sums of an (M, M) pair matrix over the members of each pair of clusters."""
    onehot = np.zeros((len(members), matrix.shape[0]))
    for c, m in enumerate(members):
        onehot[c, m] = 1.0
    return onehot @ matrix @ onehot.T


def cluster_anchors(same: torch.Tensor, both: torch.Tensor, cfg: ConsensusConfig) -> torch.Tensor:
    """(M,) cluster index per anchor (-1: dissolved) by average linkage on co-membership.

    Every anchor starts alone; the pair of clusters with the highest pooled rate
    sum(same) / (sum(both) + 1) over their anchor pairs (pairs labelled by fewer than
    ``min_views`` views do not count; the +1 prefers well-supported merges) merges, while that
    rate is at least ``join``. A cross-object pair that agreed by chance in a few views only
    misplaces one anchor: every later merge averages over all the pairs of two clusters.

    Parts of an object that no ``min_views`` views show together (a small object mostly
    hidden: its sides are co-visible in one or two views) have no counted pair: clusters
    without one between them then merge on the pooled rate over the pairs some view shows
    together, given at least ``min_views`` such co-observations in all.
    """
    same_np, both_np = same.cpu().double().numpy(), both.cpu().double().numpy()
    known = both_np >= cfg.min_views
    M = same_np.shape[0]
    clusters = _average_linkage(same_np * known, both_np * known, [[k] for k in range(M)], cfg.join)
    # second stage: clusters the counted pairs could not compare
    unjudged = _pool(known.astype(np.float64), clusters) == 0
    clusters = _average_linkage(_pool(same_np, clusters), _pool(both_np, clusters), clusters, cfg.join,
                                allowed=unjudged, min_both=cfg.min_views)
    cluster = np.full(M, -1)
    min_size = max(3, int(cfg.min_cluster * M))
    kept = sorted((m for m in clusters if len(m) >= min_size), key=len, reverse=True)
    for new, m in enumerate(kept):
        cluster[m] = new
    return torch.from_numpy(cluster).to(same.device)


def consensus_labels(votes: ViewVotes, cfg: ConsensusConfig | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Global labels (1..G, -1 unlabelled) and confidence per Gaussian from per-view ids whose
    values mean nothing across views (module docstring); also the anchors and their clusters."""
    cfg = cfg or ConsensusConfig()
    lab = votes.labels
    V, N = lab.shape
    anchors = sample_anchors(lab, cfg)
    if anchors.numel() == 0:
        return torch.full((N,), UNLABELLED, dtype=torch.int64), torch.zeros(N), {"anchors": 0, "objects": 0}
    same, both = co_membership(lab[:, anchors])
    cluster = cluster_anchors(same, both, cfg)
    G = int(cluster.max()) + 1
    score = torch.zeros(N, G + 1, device=lab.device)  # column 0: "no object"
    w = votes.confidence
    for v in range(V):
        ids, inv = lab[v].unique(return_inverse=True)  # includes -1
        a_inv = inv[anchors]
        ok = (lab[v, anchors] != UNLABELLED) & (cluster >= 0)
        # table[k, c]: the share of cluster c's anchors (of those the view labels) that id k covers.
        # A mask merging two objects covers both fully (a tie the other views break), not "mostly
        # the larger one"; half of a split object still votes for that object alone.
        table = torch.zeros(ids.numel(), G + 1, device=lab.device)
        add_at(table, a_inv[ok], cluster[ok] + 1, torch.ones(int(ok.sum()), device=lab.device))
        table = table / table.sum(0, keepdim=True).clamp_min(1)
        score += w[v][:, None] * table[inv]
        score[:, 0] += w[v] * votes.on_ignore[v].float()
    labels, conf = _decide(score, torch.tensor([UNLABELLED] + list(range(1, G + 1)), device=lab.device))
    info = {"anchors": int(anchors.numel()), "objects": G,
            "anchor_clusters": [int((cluster == c).sum()) for c in range(G)],
            "dissolved_anchors": int((cluster < 0).sum())}
    return labels, conf, info


def noise_report(per_view: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor, names: list[str],
                 share: float = 0.2, min_gaussians: int = 20) -> dict:
    """How noisy the masks looked against the consensus ``labels``: per view, masks holding at
    least ``share`` of each of two or more objects' Gaussians (merges) and objects with at
    least ``share`` of their Gaussians in each of two or more masks (splits); and the
    per-Gaussian label confidence. per_view: (V, N) per-view ids; labels: (N,) consensus."""
    views = {}
    for v, name in enumerate(names):
        ok = (per_view[v] != UNLABELLED) & (labels != UNLABELLED)
        if not ok.any():
            views[name] = {"merges": 0, "splits": 0}
            continue
        pv, gl = per_view[v][ok], labels[ok]
        pairs, counts = torch.stack([pv, gl]).unique(dim=1, return_counts=True)
        # (mask k, object c) holds a real part of c: >= share of c's Gaussians this view labels
        obj_total = {int(c): int((gl == c).sum()) for c in gl.unique()}
        real = torch.tensor([int(n) >= max(min_gaussians, share * obj_total[int(c)])
                             for c, n in zip(pairs[1].tolist(), counts.tolist())], dtype=torch.bool, device=pairs.device)
        merges = sum(int(real[pairs[0] == k].sum() >= 2) for k in pv.unique())
        splits = sum(int(real[pairs[1] == c].sum() >= 2) for c in gl.unique())
        views[name] = {"merges": merges, "splits": splits}
    labelled = labels != UNLABELLED
    c = confidence[labelled]
    n = max(len(names), 1)
    return {"merges_per_view": sum(x["merges"] for x in views.values()) / n,
            "splits_per_view": sum(x["splits"] for x in views.values()) / n,
            "confidence_mean": float(c.mean()) if c.numel() else 0.0,
            "low_confidence_fraction": float((c < 0.6).float().mean()) if c.numel() else 0.0,
            "views": views}
