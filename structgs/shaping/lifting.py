"""Lift 2D id masks to 3D labels (Eq. 9) and associate per-view ids without a tracker.

label_i = M_{v*}(p*) with (v*, p*) = argmax_{v,p} alpha_i(p) T_i(p) over the training views.
Gaussians that never contribute (or whose best pixel has the ignore id) stay unlabelled (-1).

Gaussians that never contribute (occluded, inside objects, too faint) can take the majority
label of their nearest seen Gaussians (``fill_unseen``): otherwise nothing tells the shaping
which object they belong to, and an edit of an object would leave its hidden part behind.
Neighbours are found in position + colour (``fill_features``): the hidden underside of an
object resting on the ground is as close to the ground as to the object, but it has the
object's colour (on the built-in scene, 8 neighbours by position alone label 64 % of the
unseen Gaussians right, by position + 0.3 * colour 99.7 %).

``overlap`` association: lift each view's masks separately (per-view best pixel), then merge
ids of different views whose Gaussian sets overlap (IoU over Gaussians seen in both views),
with a union-find; merged ids become consistent global ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from structgs.eval.metrics import matched_agreement
from structgs.render.api import contributions
from structgs.scene.cameras import Camera
from structgs.scene.dataset import SceneDataset
from structgs.utils.log import get_logger

log = get_logger("lifting")
UNLABELLED = -1


@dataclass
class LiftResult:
    labels: torch.Tensor  # (N,) int64, -1 = unlabelled
    coverage: float  # fraction labelled
    accuracy: float | None = None  # vs ground truth (after optimal id matching when ids are arbitrary)
    per_view_labels: torch.Tensor | None = None  # (V, N) per-view lifted ids (-1 if not seen)
    id_map: dict = field(default_factory=dict)  # (view index, raw id) -> global id, for `overlap`
    seen: torch.Tensor | None = None  # (N,) bool: contributes >= min_weight to some training view


@torch.no_grad()
def per_view_contributions(model, cameras: list[Camera], progress: bool = True):
    """(V, N) max weight and (V, N) flat pixel index of each Gaussian in each view."""
    weights, pixels = [], []
    for cam in tqdm(cameras, desc="lifting masks", disable=not progress, leave=False):
        s = model.decode(cam)
        c = contributions(s.means, s.quats, s.scales, s.opacities, cam)
        weights.append(c.gaussian_max_weight)
        pixels.append(c.gaussian_max_pixel)
    return torch.stack(weights), torch.stack(pixels)


def _mask_values(masks: list[torch.Tensor], pixels: torch.Tensor, ignore_id: int | None) -> torch.Tensor:
    """(V, N) id at each Gaussian's best pixel per view (-1 where unseen or ignored)."""
    out = torch.full_like(pixels, UNLABELLED)
    for v, m in enumerate(masks):
        seen = pixels[v] >= 0
        ids = m.reshape(-1).to(pixels.device)[pixels[v][seen]]
        out[v, seen] = ids
    if ignore_id is not None:
        out[out == ignore_id] = UNLABELLED
    return out


def lift_masks(model, dataset: SceneDataset, masks_dir, association: str = "tracked", ignore_id: int | None = 0,
               min_weight: float = 0.05, overlap_iou: float = 0.3, progress: bool = True) -> LiftResult:
    """Labels per Gaussian from the id masks of the training views.

    association: ``tracked`` (ids consistent across views) or ``overlap`` (merge per-view ids).
    """
    if association not in ("tracked", "overlap"):
        raise ValueError(f"lift_masks: association must be tracked or overlap, got {association!r}")
    cams = dataset.split("train")
    masks = [dataset.mask(c, masks_dir) for c in cams]
    weights, per_view = _lift_views(model, cams, masks, ignore_id, min_weight, progress)
    id_map: dict = {}
    if association == "overlap":
        per_view, id_map = associate_by_overlap(per_view, overlap_iou)
    best_view = weights.argmax(dim=0)
    labels = per_view.gather(0, best_view[None])[0]
    labels[weights.max(dim=0).values < min_weight] = UNLABELLED
    coverage = float((labels >= 0).float().mean())
    log.info("lifted %s masks: %.1f%% of %d Gaussians labelled, %d ids", association, 100 * coverage, labels.numel(),
             int(labels[labels >= 0].unique().numel()))
    seen = weights.max(dim=0).values >= min_weight
    return LiftResult(labels, coverage, None, per_view, id_map, seen)


def lift_per_view(model, cameras: list[Camera], masks: list[torch.Tensor], ignore_id: int | None = 0,
                  min_weight: float = 0.05, fill_knn: int = 0, fill_color_weight: float = 0.3,
                  progress: bool = True) -> torch.Tensor:
    """(V, N) Eq. 9 within each view alone: the view's mask id at each Gaussian's best pixel
    (-1 if the view does not show it). Ids are compared only within a view: no association.

    ``fill_knn`` > 0: Gaussians no view shows take, in each view, the majority id of their
    nearest seen Gaussians (fill_unseen_per_view).
    """
    weights, per_view = _lift_views(model, cameras, masks, ignore_id, min_weight, progress)
    if fill_knn > 0:
        with torch.no_grad():
            feats = fill_features(model.centroids.detach(), model.view_independent_colors(), fill_color_weight)
        per_view = fill_unseen_per_view(per_view, weights >= min_weight, feats.to(per_view.device), fill_knn)
    return per_view


def _lift_views(model, cameras, masks, ignore_id, min_weight, progress) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, N) best weights and (V, N) per-view ids (unlabelled below ``min_weight``)."""
    weights, pixels = per_view_contributions(model, cameras, progress)
    per_view = _mask_values(masks, pixels, ignore_id)
    per_view[weights < min_weight] = UNLABELLED
    return weights, per_view


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
    from structgs.shaping.knn import knn_query

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


def fill_unseen_per_view(per_view: torch.Tensor, seen_in_view: torch.Tensor, features: torch.Tensor,
                         k: int = 8) -> torch.Tensor:
    """fill_unseen within each view, so that ids still never cross views (tracker-free mode).

    per_view: (V, N) per-view ids (-1 unlabelled); seen_in_view: (V, N) bool, contributes to
    that view. A Gaussian no view shows gets its k nearest Gaussians some view shows (in
    ``features``, once); in view v, those that v shows vote with their v id (seen on the ignore
    id: "no object"), the others abstain. The majority id wins; a "no object" majority, or no
    vote at all, leaves it unlabelled in v.
    """
    from structgs.shaping.knn import knn_query

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


def associate_by_overlap(per_view: torch.Tensor, min_iou: float = 0.3) -> tuple[torch.Tensor, dict]:
    """Merge per-view ids whose Gaussian sets overlap; returns (V, N) global ids and the map."""
    V, N = per_view.shape
    nodes: dict[tuple[int, int], int] = {}
    for v in range(V):
        for k in per_view[v].unique().tolist():
            if k >= 0:
                nodes[(v, k)] = len(nodes)
    parent = list(range(len(nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a in range(V):
        for b in range(a + 1, V):
            la, lb = per_view[a], per_view[b]
            both = (la >= 0) & (lb >= 0)
            if not both.any():
                continue
            xa, xb = la[both], lb[both]
            ka, kb = int(xa.max()) + 1, int(xb.max()) + 1
            joint = torch.bincount(xa * kb + xb, minlength=ka * kb).reshape(ka, kb).float()
            size_a, size_b = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
            iou = joint / (size_a + size_b - joint).clamp_min(1)
            for i, j in torch.nonzero(iou > min_iou).tolist():
                # merge only mutual best matches, so one noisy overlap cannot chain two objects
                if int(iou[i].argmax()) == j and int(iou[:, j].argmax()) == i:
                    ra, rb = find(nodes[(a, i)]), find(nodes[(b, j)])
                    if ra != rb:
                        parent[ra] = rb
    roots = sorted({find(x) for x in range(len(nodes))})
    root_id = {r: g + 1 for g, r in enumerate(roots)}  # global ids from 1
    id_map = {key: root_id[find(idx)] for key, idx in nodes.items()}
    out = torch.full_like(per_view, UNLABELLED)
    for (v, k), gid in id_map.items():
        out[v][per_view[v] == k] = gid
    log.info("overlap association: %d per-view ids -> %d global ids", len(nodes), len(roots))
    return out, id_map


def matched_accuracy(labels: torch.Tensor, truth: torch.Tensor) -> float:
    """Fraction of labelled Gaussians whose id matches the truth after an optimal one-to-one id matching."""
    ok = labels >= 0
    return matched_agreement(labels[ok], truth[ok]) if ok.any() else 0.0
