"""Shaping losses (docs/method.md §3).

InfoNCE (Eq. 8) on cosine similarities with temperature tau, supervised by labels: every
pair of the same label is a positive, other labels are negatives (see supervised_infonce).

kNN smoothness (Eq. 10): 1 - cos(a_i, mean_{j in kNN(i)} a_j), the neighbours' mean detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=-1, eps=1e-8)
    return x @ x.T


def supervised_infonce(features: torch.Tensor, labels: torch.Tensor, tau: float = 0.1,
                       trusted: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over every positive pair (i, p) of the batch, against i's negatives:

        L_ip = -log( exp(c_ip/tau) / (exp(c_ip/tau) + sum_{n: other label} exp(c_in/tau)) )

    (van den Oord's form, one positive per term). Other positives are not in the denominator,
    so negatives keep being pushed until they are orthogonal (cos -> 0) instead of being
    drowned out by a large object's many positives. Mean over positive pairs; 0 if none.

    ``trusted``: optional (B, B) bool; pairs outside it are neither positives nor negatives
    (labels that other evidence contradicts, see pair_consensus).
    """
    b = features.shape[0]
    cos = cosine_matrix(features)
    same = labels[:, None] == labels[None, :]
    # negatives are pushed to orthogonal, not opposite: a negative cosine earns nothing more
    # (else an object could escape into the leaky negative range of a side channel)
    logits = torch.where(same, cos, cos.clamp_min(0.0)) / tau
    eye = torch.eye(b, dtype=torch.bool, device=features.device)
    pos = same & ~eye
    negative = ~same
    if trusted is not None:
        pos, negative = pos & trusted, negative & trusted
    if not pos.any():
        return features.sum() * 0.0
    neg_lse = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)  # (B, 1)
    # -log(e^p / (e^p + e^N)) = softplus(N - p); anchors without negatives give N = -inf -> 0
    per_pair = torch.nn.functional.softplus(neg_lse - logits)
    return per_pair[pos].mean()


def pair_consensus(view_labels: torch.Tensor, view: int, min_views: int = 3, join: float = 0.5) -> torch.Tensor:
    """(B, B) bool: pairs whose relation in ``view`` agrees with the other views.

    view_labels: (V, B) per-view ids of a batch (-1: no id). Two Gaussians with the same id in
    ``view`` are trusted as positives when they share an id in at least ``join`` of the views
    labelling both; with different ids, as negatives when they share one in less than that.
    Pairs that fewer than ``min_views`` views label are trusted as the view says. Only ids of
    one view are ever compared with each other: no association across views.
    """
    has = view_labels != -1
    same = torch.zeros(view_labels.shape[1], view_labels.shape[1], device=view_labels.device)
    both = torch.zeros_like(same)
    for v in range(view_labels.shape[0]):
        h = has[v]
        same += ((view_labels[v][:, None] == view_labels[v][None, :]) & h[:, None] & h[None, :]).float()
        both += (h[:, None] & h[None, :]).float()
    together = same >= join * both
    here = view_labels[view][:, None] == view_labels[view][None, :]
    return (both < min_views) | (here == together)


def knn_smoothness(features: torch.Tensor, neighbour_features: torch.Tensor,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """features (B, D); neighbour_features (B, k, D): 1 - cos(a_i, mean of neighbours), mean over B.

    ``keep``: optional (B, k) bool, the neighbours that count (e.g. those not labelled as another
    object: at a contact, the touching object's Gaussians would otherwise pull a Gaussian
    towards that object's activations). Rows with no kept neighbour are left out; 0 if none.
    """
    unit = F.normalize(neighbour_features.detach(), dim=-1)
    if keep is None:
        target = unit.mean(1)
        return (1 - F.cosine_similarity(features, target, dim=-1, eps=1e-8)).mean()
    if keep.shape != neighbour_features.shape[:2]:
        raise ValueError(f"keep must be {tuple(neighbour_features.shape[:2])}, got {tuple(keep.shape)}")
    rows = keep.any(1)
    if not rows.any():
        return features.sum() * 0.0
    w = keep.to(unit.dtype)
    target = (unit * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
    return (1 - F.cosine_similarity(features[rows], target[rows], dim=-1, eps=1e-8)).mean()


def same_object_neighbours(labels: torch.Tensor, neighbour_labels: torch.Tensor, unlabelled: int = -1) -> torch.Tensor:
    """(B, k) bool: neighbours not known to belong to another object than their row's Gaussian
    (same label, or either side unlabelled). labels (B,), neighbour_labels (B, k)."""
    row = labels[:, None]
    return (neighbour_labels == row) | (neighbour_labels == unlabelled) | (row == unlabelled)


def jacobian_features(decoder, branch: str, latents: torch.Tensor, view: torch.Tensor | None,
                      centroids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C * out * in) explicit per-Gaussian Jacobians dy/dW of the perturbable layer, for every
    output channel, differentiable w.r.t. the decoder (JacobiNeRF/JacobiGS baseline)."""
    from structgs.decoder.decoder import activate

    mlp = decoder._branch(branch)
    x = decoder.branch_input(branch, latents, view, centroids)
    a = mlp.activation(x)
    z = mlp.perturbable(a)
    y = activate(branch, mlp.after_preact(z), decoder.config.scale_log_range)
    y = y if y.ndim == 2 else y[:, None]
    jac = []
    for c in range(y.shape[1]):
        (delta,) = torch.autograd.grad(y[:, c].sum(), z, create_graph=True)
        jac.append(torch.einsum("bo,bi->boi", delta, a).reshape(a.shape[0], -1))
    return torch.cat(jac, dim=1)


@torch.no_grad()
def object_cosine_matrix(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """(K, K) mean cos(a_i, a_j) for i in object k, j in object l (pairs over all Gaussians).

    With u_k the mean unit activation of object k, the mean pairwise cosine is u_k . u_l
    (diagonal: i = j pairs included, negligible for large objects).
    """
    ids = sorted(int(k) for k in labels.unique() if k >= 0)
    unit = F.normalize(features, dim=-1, eps=1e-8)
    means = torch.stack([unit[labels == k].mean(0) for k in ids])
    return means @ means.T, ids
