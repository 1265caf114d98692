"""Labels for the Gaussians the masks leave unsure: never seen, seen by too few views, or
outvoted by too little.

Gaussians that never contribute (occluded, inside objects, too faint) take the majority label
of their nearest trusted Gaussians (``fill_unseen``): otherwise nothing tells the shaping (or
the consensus render of ``structgs masks``) which object they belong to, and an edit of an
object would leave its hidden part behind. Neighbours are found in position + colour
(``fill_features``): the hidden underside of an object resting on the ground is as close to
the ground as to the object, but it has the object's colour (on the built-in scene, 8
neighbours by position alone label 64 % of the unseen Gaussians right, by position + 0.3 *
colour 99.7 %). Gaussians whose own label is unsure -- a low winning share, or too few views
(``trusted_voters``) -- are relabelled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structgs.masks.consensus import UNLABELLED
from structgs.utils.knn import knn_query
from structgs.utils.errors import InputError


def trusted_voters(labels: torch.Tensor, confidence: torch.Tensor, views: torch.Tensor, min_confidence: float,
                   min_views: int, keep_share: float = 0.5) -> torch.Tensor:
    """(N,) bool: Gaussians whose lifted label is trusted to label others (``fill_unseen``).

    labels: (N,) ids, -1 with votes = "no object" won (a class too: such voters make a
    background majority leave a Gaussian unlabelled); confidence: the winner's share; views:
    (N,) number of views voting on each Gaussian (0: never seen).

    A label needs a winning share of at least ``min_confidence`` and at least ``min_views``
    views: the one to three views that see a Gaussian at an object's contact can all be
    covered by the touching object's dilated mask (a wrong label with confidence 1). An object
    the views rarely see (fewer than ``keep_share`` of its confident Gaussians in ``min_views``
    views) is held to the largest view count that keeps that share, so that it is not filled
    away by its neighbours. "No object" is never held lower: eroded masks leave the rim of a
    thin object outside the mask in a few views, and those votes must not spread into it.
    """
    confident = (views > 0) & (confidence >= min_confidence)
    voters = torch.zeros_like(confident)
    for k in labels[confident].unique():
        mine = confident & (labels == k)
        need = min_views
        while k != UNLABELLED and need > 1 and int((mine & (views >= need)).sum()) < keep_share * int(mine.sum()):
            need -= 1
        voters |= mine & (views >= need)
    return voters


IGNORED = -2  # seen, but on the ignore id: votes for "no object" when filling unseen Gaussians


def fill_features(centroids: torch.Tensor, colors: torch.Tensor, color_weight: float) -> torch.Tensor:
    """(N, 6) [centroid / extent, color_weight * rgb]; extent = diagonal of the 1-99 % centroid box."""
    sample = centroids[:: max(1, centroids.shape[0] // 1_000_000)]  # torch.quantile caps its input size
    lo, hi = torch.quantile(sample, 0.01, dim=0), torch.quantile(sample, 0.99, dim=0)
    extent = (hi - lo).norm().clamp_min(1e-8)
    return torch.cat([centroids / extent, color_weight * colors], dim=1)


def fill_unseen(labels: torch.Tensor, seen: torch.Tensor, features: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Labels where every Gaussian that was never seen takes the most common value among its
    k nearest seen Gaussians in ``features`` (N, D) (see fill_features); a majority of
    seen-but-unlabelled (background) neighbours leaves it unlabelled. Seen Gaussians keep
    their labels."""
    unseen = torch.nonzero(~seen).flatten()
    if unseen.numel() == 0 or not seen.any() or k <= 0:
        return labels.clone()
    seen_idx = torch.nonzero(seen).flatten()
    votes = labels[seen_idx].clone()
    votes[votes == UNLABELLED] = IGNORED
    nbr = knn_query(features[unseen], features[seen_idx], k)
    winner = torch.mode(votes[nbr.to(votes.device)], dim=1).values
    winner[winner == IGNORED] = UNLABELLED
    out = labels.clone()
    out[unseen] = winner
    return out


@dataclass(frozen=True)
class FillConfig:
    """Which lifted labels are trusted, and how the others are filled (the defaults of
    ``structgs shape``, see ShapeConfig)."""

    min_confidence: float = 0.6
    """A label needs at least this share of its Gaussian's votes."""
    min_views: int = 4
    """... and at least this many views (held lower for objects the views rarely see)."""
    knn: int = 16
    """Untrusted Gaussians take the majority label of this many nearest trusted ones."""
    color_weight: float = 0.6
    """Weight of the colour next to the position in that neighbour search."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise InputError(f"fill: min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.min_views < 1 or self.knn < 0 or self.color_weight < 0:
            raise InputError(f"fill: need min_views >= 1, knn >= 0, color_weight >= 0; got {self.min_views}, "
                             f"{self.knn}, {self.color_weight}")


def fill_labels(labels: torch.Tensor, confidence: torch.Tensor, views: torch.Tensor, centroids: torch.Tensor,
                colors: torch.Tensor, cfg: FillConfig = FillConfig()) -> torch.Tensor:
    """Every Gaussian that is not a trusted voter (``trusted_voters``) takes the majority label
    of its ``cfg.knn`` nearest trusted ones (``fill_unseen``, in ``fill_features``).
    views: (N,) number of views voting on each Gaussian; colors: (N, 3) rgb."""
    voters = trusted_voters(labels, confidence, views, cfg.min_confidence, cfg.min_views)
    features = fill_features(centroids, colors, cfg.color_weight).to(labels.device)
    return fill_unseen(labels, voters.to(labels.device), features, cfg.knn)
