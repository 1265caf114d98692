"""Lift 2D id masks to 3D labels and associate per-view ids without a tracker.

Eq. 9 of the paper labels a Gaussian with the id at the single best pixel of the single best
view; under boundary jitter that pixel is often wrong. Here every view that sees a Gaussian
votes with the ids of all its pixels, weighted by alpha*T, outside a band along id
boundaries (``consensus.view_votes``):

* ``tracked`` ids (consistent across views): the votes of all views are summed per id;
* ``overlap`` (ids mean nothing across views): per-view winners are associated by the
  consensus of co-membership (``consensus.consensus_labels``), which a minority of merged or
  split masks cannot corrupt;
* ``lift_per_view`` (the tracker-free mode): each view's winners alone, ids never compared
  across views.

Every result carries a per-Gaussian confidence (the winning share of the votes) and a noise
report (estimated merges / splits per view). Gaussians the votes leave unsure (never seen,
seen by too few views, outvoted by too little) take the majority label of their nearest trusted
Gaussians in position + colour (``structgs.masks.fill``).

One-object masks (no view holds two ids, e.g. the click flow of ``structgs masks --pixel``):
InfoNCE has no negatives, so ``rest_label`` makes everything the views show outside the masks
one more class, REST (0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from structgs.utils.metrics import matched_agreement
from structgs.scene.cameras import Camera
from structgs.scene.dataset import SceneDataset
from structgs.masks.fill import IGNORED, fill_features, fill_labels, fill_unseen, trusted_voters
from structgs.masks.consensus import (REST, UNLABELLED, ConsensusConfig, ViewVotes, consensus_labels, membership_support,
                                        noise_report, sample_anchors, view_votes, vote_tracked)
from structgs.utils.knn import knn_query
from structgs.utils.log import get_logger

log = get_logger("lifting")
__all__ = ["REST", "UNLABELLED", "LiftResult", "lift_masks", "lift_per_view", "needs_rest_label", "fill_unseen",
           "fill_unseen_per_view", "fill_features", "fill_labels", "matched_accuracy", "trusted_voters"]


@dataclass
class LiftResult:
    labels: torch.Tensor  # (N,) int64, -1 = unlabelled (REST = 0 with rest_label)
    coverage: float  # fraction labelled
    confidence: torch.Tensor | None = None  # (N,) winning share of the Gaussian's votes (0 if unlabelled)
    per_view_labels: torch.Tensor | None = None  # (V, N) per-view winning ids (-1 if no vote)
    seen: torch.Tensor | None = None  # (N,) bool: some training view votes on it
    noise: dict = field(default_factory=dict)  # noise_report of the masks against the labels
    association: dict = field(default_factory=dict)  # consensus details (overlap)
    views: torch.Tensor | None = None  # (N,) number of views voting on each Gaussian (an id or "no object")


def needs_rest_label(masks: list[torch.Tensor], ignore_id: int | None) -> bool:
    """True when some view holds an id and none holds two: then the rest of the scene must be
    the negative class (masks with no id at all label nothing, and shaping refuses them)."""
    counts = [sum(1 for k in m.unique().tolist() if k != ignore_id) for m in masks]
    return max(counts, default=0) == 1


def lift_masks(model, dataset: SceneDataset, masks_dir, association: str = "tracked", ignore_id: int | None = 0,
               min_weight: float = 0.05, band: int = 2, rest_label: bool | None = None,
               consensus: ConsensusConfig | None = None, progress: bool = True) -> LiftResult:
    """Labels per Gaussian from the id masks of the training views.

    association: ``tracked`` (ids consistent across views) or ``overlap`` (per-view ids,
    associated by consensus). rest_label None: on when the masks hold one id per view at most.
    """
    if association not in ("tracked", "overlap"):
        raise ValueError(f"lift_masks: association must be tracked or overlap, got {association!r}")
    cams = dataset.split("train")
    masks = [dataset.mask(c, masks_dir) for c in cams]
    rest = needs_rest_label(masks, ignore_id) if rest_label is None else rest_label
    votes = view_votes(model, cams, masks, ignore_id, band, min_weight, rest, progress)
    info: dict = {"rest_label": rest}
    if association == "overlap":
        labels, conf, info_c = consensus_labels(votes, consensus)
        info.update(info_c)
    else:
        labels, conf = vote_tracked(votes)
    labels, conf = labels.to(votes.labels.device), conf.to(votes.labels.device)
    coverage = float((labels != UNLABELLED).float().mean())
    noise = noise_report(votes.labels, labels, conf, [c.name for c in cams])
    log.info("lifted %s masks: %.1f%% of %d Gaussians labelled, %d ids, mean confidence %.2f, "
             "estimated merges / splits per view %.2f / %.2f", association, 100 * coverage, labels.numel(),
             int(labels[labels != UNLABELLED].unique().numel()), noise["confidence_mean"], noise["merges_per_view"],
             noise["splits_per_view"])
    voted = votes.voted
    return LiftResult(labels, coverage, conf, votes.labels, voted.any(0), noise, info, voted.sum(0))


def lift_per_view(model, cameras: list[Camera], masks: list[torch.Tensor], ignore_id: int | None = 0,
                  min_weight: float = 0.05, fill_knn: int = 0, fill_color_weight: float = 0.6, band: int = 2,
                  rest_label: bool | None = None, min_confidence: float = 0.0, min_views: int = 1,
                  min_support: float = 0.0, consensus: ConsensusConfig | None = None,
                  progress: bool = True) -> tuple[torch.Tensor, ViewVotes]:
    """(V, N) each view's winning id per Gaussian (-1 if the view has no id for it), and the
    votes. Ids are compared only within a view: no association.

    A view's vote whose winner has less than ``min_confidence`` of it is dropped; so is a view's
    label that the other views do not support (``consensus.membership_support`` below
    ``min_support``, measured on ``consensus.anchors`` anchors), and so are all the votes on a
    Gaussian that fewer than ``min_views`` views label. ``fill_knn`` > 0:
    Gaussians left with no vote take, in each view, the majority id of their nearest seen
    Gaussians (fill_unseen_per_view).
    """
    rest = needs_rest_label(masks, ignore_id) if rest_label is None else rest_label
    votes = view_votes(model, cameras, masks, ignore_id, band, min_weight, rest, progress)
    confident = votes.voted & (votes.confidence >= min_confidence)
    if min_support > 0:
        cfg = consensus or ConsensusConfig()
        labelled = torch.where(confident, votes.labels, torch.full_like(votes.labels, UNLABELLED))
        support = membership_support(labelled, sample_anchors(labelled, cfg), cfg.min_views)
        confident &= ~((support >= 0) & (support < min_support))
    confident &= ((confident & (votes.labels != UNLABELLED)).sum(0) >= min_views)[None]
    per_view = torch.where(confident, votes.labels, torch.full_like(votes.labels, UNLABELLED))
    if fill_knn > 0:
        with torch.no_grad():
            feats = fill_features(model.centroids.detach(), model.view_independent_colors(), fill_color_weight)
        per_view = fill_unseen_per_view(per_view, confident, feats.to(per_view.device), fill_knn)
    return per_view, votes


def fill_unseen_per_view(per_view: torch.Tensor, seen_in_view: torch.Tensor, features: torch.Tensor,
                         k: int = 8) -> torch.Tensor:
    """fill_unseen within each view, so that ids still never cross views (tracker-free mode).

    per_view: (V, N) per-view ids (-1 unlabelled); seen_in_view: (V, N) bool, contributes to
    that view. A Gaussian no view shows gets its k nearest Gaussians some view shows (in
    ``features``, once); in view v, those that v shows vote with their v id (seen on the ignore
    id: "no object"), the others abstain. The majority id wins; a "no object" majority, or no
    vote at all, leaves it unlabelled in v.
    """
    seen = seen_in_view.any(dim=0)
    unseen = torch.nonzero(~seen).flatten()
    out = per_view.clone()
    if unseen.numel() == 0 or not seen.any() or k <= 0:
        return out
    seen_idx = torch.nonzero(seen).flatten()
    nbr = seen_idx[knn_query(features[unseen], features[seen_idx], k).to(seen_idx.device)]  # (U, k) Gaussian ids
    abstain = IGNORED - 1
    for v in range(per_view.shape[0]):
        votes = per_view[v][nbr]  # (U, k)
        votes = torch.where(votes == UNLABELLED, torch.full_like(votes, IGNORED), votes)
        votes = torch.where(seen_in_view[v][nbr], votes, torch.full_like(votes, abstain))
        # majority over the non-abstaining votes: count equal pairs (k is small)
        counts = ((votes[:, :, None] == votes[:, None, :]) & (votes[:, None, :] != abstain)).sum(-1)
        counts = torch.where(votes == abstain, torch.full_like(counts, -1), counts)
        winner = votes.gather(1, counts.argmax(dim=1, keepdim=True))[:, 0]
        winner[(winner == IGNORED) | (winner == abstain)] = UNLABELLED
        out[v, unseen] = winner
    return out


def matched_accuracy(labels: torch.Tensor, truth: torch.Tensor) -> float:
    """Fraction of labelled Gaussians whose id matches the truth after an optimal one-to-one id matching."""
    ok = labels >= 0
    return matched_agreement(labels[ok], truth[ok]) if ok.any() else 0.0
