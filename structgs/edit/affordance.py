"""Affordance transfer (the voting paper [3], §III-B; docs/method.md §5): labels annotated on a
few example images ("grasp", "cut", background...) carried to the Gaussians of a scene.

1. **Patch labels.** Every patch of a rendered view takes the majority label of its k nearest
   example patches by cosine of their features (DINOv2, structgs.masks.dino): ``label_patches``.
   Upsampled to pixels, these 2D label maps are noisy at the patch level.
2. **3D by voting** (``vote_labels``): each view votes for every label with the masked-gradient
   weights, ``votes_il = sum_v sum_p [L_v(p) = l] w_i^v(p)``, and each Gaussian takes its
   arg-max label. Many views outvote one view's patch errors: the paper's point, measured
   against ``single_view_labels`` (each Gaussian labelled at its best pixel of its best view,
   Eq. 9's lifting).
3. **3D by lifted features** (``lift_features`` + ``classify``): each Gaussian's feature is the
   blend-weight-weighted mean of the pixel features it contributes to (the same contributions
   voting uses; accumulated in float32, chunked over channels, kept in float16), classified by
   kNN against the examples directly.

Label 0 is "no label" (background / unseen); a Gaussian no view shows keeps 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from structgs.render.api import contributions
from structgs.utils.errors import InputError
from structgs.utils.labels import patch_majority, upsample_labels

__all__ = ["ExampleBank", "example_bank", "knn_labels", "label_patches", "patch_majority", "upsample_labels",
           "label_votes", "vote_labels", "single_view_labels", "lift_features", "classify"]


@dataclass(frozen=True)
class ExampleBank:
    """Example patch features (M, C), unit length, and their labels (M,) (> 0; 0 never votes)."""

    features: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.labels.shape != (self.features.shape[0],):
            raise InputError(f"example bank: expected features (M, C) and labels (M,), got "
                             f"{tuple(self.features.shape)} and {tuple(self.labels.shape)}")
        if self.features.shape[0] == 0:
            raise InputError("example bank: no labelled example patch (every example id mask is 0)")


def example_bank(feature_grids: list[torch.Tensor], label_maps: list[torch.Tensor]) -> ExampleBank:
    """Patch features of example images with each patch's majority pixel label (patches
    labelled 0 are left out). ``feature_grids``: (h, w, C) per image; ``label_maps``: (H, W)."""
    feats, labels = [], []
    for grid, lab in zip(feature_grids, label_maps):
        h, w, _ = grid.shape
        per_patch = patch_majority(lab, h, w)
        keep = per_patch > 0
        feats.append(F.normalize(grid[keep].float(), dim=-1))
        labels.append(per_patch[keep])
    return ExampleBank(torch.cat(feats), torch.cat(labels))


def knn_labels(features: torch.Tensor, bank: ExampleBank, k: int = 5, chunk: int = 65536) -> torch.Tensor:
    """(B,) majority label of each row's k nearest bank features by cosine (ties: nearest)."""
    if k < 1:
        raise InputError(f"--k must be >= 1, got {k}")
    k = min(k, bank.features.shape[0])
    n_labels = int(bank.labels.max()) + 1
    out = torch.empty(features.shape[0], dtype=torch.long)
    bank_f = bank.features.float()
    for start in range(0, features.shape[0], chunk):
        f = F.normalize(features[start:start + chunk].float(), dim=-1)
        sim, idx = (f @ bank_f.T).topk(k, dim=1)
        votes = torch.zeros(f.shape[0], n_labels)
        # each neighbour votes 1, plus a tiny share of its similarity so ties go to the nearest
        votes.scatter_add_(1, bank.labels[idx], 1 + 1e-3 * sim)
        out[start:start + f.shape[0]] = votes.argmax(1)
    return out


def label_patches(grid: torch.Tensor, bank: ExampleBank, k: int = 5) -> torch.Tensor:
    """(h, w) label of every patch of an (h, w, C) feature grid (kNN against the examples)."""
    h, w, c = grid.shape
    return knn_labels(grid.reshape(-1, c), bank, k).reshape(h, w)


@torch.no_grad()
def label_votes(model, cameras, label_maps: list[torch.Tensor], num_labels: int,
                on_view: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N, num_labels) votes: sum over views and pixels of [L_v(p) = l] w_i^v(p)."""
    if len(cameras) != len(label_maps) or not cameras:
        raise InputError("label voting needs one label map per view (and at least one view)")
    votes = torch.zeros(model.num_gaussians, num_labels, device=model.device)
    geometry = model.geometry_by_view()
    for done, (cam, lab) in enumerate(zip(cameras, label_maps), 1):
        s = geometry(cam)
        onehot = F.one_hot(lab.long().clamp(0, num_labels - 1), num_labels).float().to(model.device)
        con = contributions(s.means, s.quats, s.scales, s.opacities, cam, pixel_weights=onehot)
        votes += con.weighted_sums
        if on_view is not None:
            on_view(done, len(cameras))
    return votes.cpu()


def vote_labels(model, cameras, label_maps: list[torch.Tensor], num_labels: int,
                on_view: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N,) label per Gaussian: the arg-max of its votes over labels 1.. (0 where label 0, the
    background, outvotes them or no view shows it)."""
    votes = label_votes(model, cameras, label_maps, num_labels, on_view)
    best = votes.argmax(1)
    return torch.where(votes.sum(1) > 0, best, torch.zeros_like(best))


@torch.no_grad()
def single_view_labels(model, cameras, label_maps: list[torch.Tensor]) -> torch.Tensor:
    """(N,) the label at each Gaussian's single best pixel of its single best view (the
    largest alpha*T over all views): one view decides, as a one-view transfer would."""
    best_w = torch.zeros(model.num_gaussians)
    labels = torch.zeros(model.num_gaussians, dtype=torch.long)
    geometry = model.geometry_by_view()
    for cam, lab in zip(cameras, label_maps):
        s = geometry(cam)
        con = contributions(s.means, s.quats, s.scales, s.opacities, cam)
        w, pix = con.gaussian_max_weight.cpu(), con.gaussian_max_pixel.cpu()
        better = (w > best_w) & (pix >= 0)
        labels[better] = lab.reshape(-1).long()[pix[better]]
        best_w = torch.where(better, w, best_w)
    return labels


@torch.no_grad()
def lift_features(model, cameras, feature_maps: list[torch.Tensor], channel_chunk: int = 64,
                  on_view: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N, C) float16 per-Gaussian features: sum_v sum_p w_i^v(p) F_v(p) / sum_v sum_p w_i^v(p)
    for (H, W, C) feature maps, or (h, w, C) patch grids upsampled bilinearly ``channel_chunk``
    channels at a time (zeros where no view shows the Gaussian)."""
    if len(cameras) != len(feature_maps) or not cameras:
        raise InputError("feature lifting needs one feature map per view (and at least one view)")
    c = int(feature_maps[0].shape[-1])
    acc = torch.zeros(model.num_gaussians, c)
    total = torch.zeros(model.num_gaussians)
    geometry = model.geometry_by_view()
    for done, (cam, fmap) in enumerate(zip(cameras, feature_maps), 1):
        s = geometry(cam)
        for start in range(0, c, channel_chunk):
            part = fmap[..., start:start + channel_chunk].float()
            if tuple(part.shape[:2]) != (cam.height, cam.width):  # a patch grid: bilinear to pixels
                part = F.interpolate(part.permute(2, 0, 1)[None], size=(cam.height, cam.width), mode="bilinear",
                                     align_corners=False)[0].permute(1, 2, 0)
            part = part.to(model.device)
            con = contributions(s.means, s.quats, s.scales, s.opacities, cam, pixel_weights=part)
            acc[:, start:start + part.shape[-1]] += con.weighted_sums.cpu()
        total += con.weight_sum.cpu()
        if on_view is not None:
            on_view(done, len(cameras))
    return (acc / total.clamp_min(1e-12)[:, None]).half()


def classify(features: torch.Tensor, bank: ExampleBank, k: int = 5) -> torch.Tensor:
    """(N,) kNN label of lifted Gaussian features (0 where a Gaussian has no feature)."""
    labels = knn_labels(features, bank, k)
    return torch.where(features.float().abs().sum(1) > 0, labels, torch.zeros_like(labels))
