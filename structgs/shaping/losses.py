"""Shaping losses (docs/method.md §3).

InfoNCE (Eq. 8) on cosine similarities with temperature tau, supervised by labels: every
pair of the same label is a positive, other labels are negatives (see supervised_infonce).

kNN smoothness (Eq. 10): 1 - cos(a_i, mean_{j in kNN(i)} a_j), the neighbours' mean detached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


MIN_TAU = 0.02
"""Smallest InfoNCE temperature: the loss shifts logits by 1/tau (so exp cannot overflow), and
a negative's term exp(-1/tau) must stay a normal float32."""


@dataclass(frozen=True)
class ContrastivePairs:
    """The pairs of a batch that InfoNCE uses, made once per batch and shared by every branch."""

    floor: torch.Tensor
    """(B, B) lower clamp of the cosine: 0 between different labels (a negative is pushed to
    orthogonal, not opposite), -inf within a label."""
    negative: torch.Tensor
    """(B, B) 1 on pairs in each other's denominators, else 0."""
    weight: torch.Tensor
    """(B, B) 1 / (number of positive pairs) on positive pairs, else 0: the loss is the mean over
    positive pairs."""
    positives: int
    """Number of positive pairs."""

    @classmethod
    def from_labels(cls, labels: torch.Tensor, trusted: torch.Tensor | None = None,
                    dtype: torch.dtype = torch.float32) -> "ContrastivePairs":
        """Every pair of one label is a positive, other labels are negatives; pairs outside
        ``trusted`` ((B, B) bool, optional) are neither."""
        same = labels[:, None] == labels[None, :]
        pos = same.clone()
        pos.fill_diagonal_(False)
        negative = ~same
        if trusted is not None:
            pos, negative = pos & trusted, negative & trusted
        count = int(pos.sum())
        floor = torch.zeros(same.shape, dtype=dtype, device=labels.device).masked_fill_(same, float("-inf"))
        return cls(floor, negative.to(dtype), pos.to(dtype).div_(max(count, 1)), count)

    def to(self, dtype: torch.dtype) -> "ContrastivePairs":
        if self.floor.dtype == dtype:
            return self
        return ContrastivePairs(self.floor.to(dtype), self.negative.to(dtype), self.weight.to(dtype), self.positives)


class _PairInfoNCE(torch.autograd.Function):
    """sum_(i,p) w_ip softplus(N_i - l_ip) with l = max(u u^T, floor) / tau and
    N_i = log sum over i's negatives of exp(l_in); the gradient is formed in the forward pass
    (one B x B matrix) instead of by autograd through a dozen B x B intermediates (2-3x faster on
    CPU; tests/test_shaping.py checks it against the plain autograd form and finite differences).

    dL/dl_ip = -w_ip s(N_i - l_ip) on positives, dL/dl_in = P_i exp(l_in - N_i) on negatives,
    with s the sigmoid and P_i = sum_p w_ip s(N_i - l_ip) (softplus' = s, logsumexp' = softmax).
    """

    @staticmethod
    def forward(ctx, unit, floor, negative, weight, tau):
        cos = unit @ unit.T
        logits = torch.maximum(cos, floor).div_(tau)
        # cos <= 1, so exp(l - 1/tau) <= 1 never overflows; a negative's logit is >= 0, so each of
        # its terms is >= exp(-1/tau) (tau >= MIN_TAU). One exp pass instead of logsumexp's max,
        # shift and exp passes; rows without negatives get N = log 0 = -inf: no term, no gradient
        terms = logits.sub(1.0 / tau).exp_().mul_(negative)
        total = terms.sum(1, keepdim=True)  # exp(N_i - 1/tau)
        gap = (total.log() + 1.0 / tau) - logits  # N_i - l_ij
        loss = (torch.nn.functional.softplus(gap) * weight).sum()
        if ctx.needs_input_grad[0]:
            pull = torch.sigmoid(gap).mul_(weight)
            push = terms.mul_(pull.sum(1, keepdim=True) / total.clamp_min(torch.finfo(total.dtype).tiny))
            grad = push.sub_(pull).div_(tau).mul_(cos >= floor)  # clamped cosines pass nothing
            ctx.save_for_backward(unit, grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        unit, grad = ctx.saved_tensors
        # two products, not (grad + grad.T) @ unit: a transposed add is 3x a product here
        return (grad @ unit + grad.T @ unit) * grad_loss, None, None, None, None


def infonce(features: torch.Tensor, pairs: ContrastivePairs, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE over every positive pair (i, p) of the batch, against i's negatives:

        L_ip = -log( exp(c_ip/tau) / (exp(c_ip/tau) + sum_{n: other label} exp(c_in/tau)) )

    (van den Oord's form, one positive per term). Other positives are not in the denominator,
    so negatives keep being pushed until they are orthogonal (cos -> 0) instead of being
    drowned out by a large object's many positives; a negative cosine earns nothing more (else
    an object could escape into the leaky negative range of a side channel). Mean over positive
    pairs; 0 if none.
    """
    if features.shape[0] != pairs.weight.shape[0]:
        raise ValueError(f"features: expected {pairs.weight.shape[0]} rows (the pairs' batch), got {features.shape[0]}")
    if tau < MIN_TAU:
        raise ValueError(f"InfoNCE temperature must be >= {MIN_TAU}, got {tau}")
    if pairs.positives == 0:
        return features.sum() * 0.0
    unit = F.normalize(features, dim=-1, eps=1e-8)
    p = pairs.to(unit.dtype)
    return _PairInfoNCE.apply(unit, p.floor, p.negative, p.weight, tau)


def supervised_infonce(features: torch.Tensor, labels: torch.Tensor, tau: float = 0.1,
                       trusted: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`infonce` with the pairs of ``labels`` (B,); ``trusted``: optional (B, B) bool, pairs
    outside it are neither positives nor negatives (labels that other evidence contradicts, see
    pair_consensus)."""
    return infonce(features, ContrastivePairs.from_labels(labels, trusted, features.dtype), tau)


def pair_consensus(view_labels: torch.Tensor, view: int, min_views: int = 3, join: float = 0.5) -> torch.Tensor:
    """(B, B) bool: pairs whose relation in ``view`` agrees with the other views.

    view_labels: (V, B) per-view ids of a batch (-1: no id). Two Gaussians with the same id in
    ``view`` are trusted as positives when they share an id in at least ``join`` of the views
    labelling both; with different ids, as negatives when they share one in less than that.
    Pairs that fewer than ``min_views`` views label are trusted as the view says. Only ids of
    one view are ever compared with each other: no association across views.
    """
    has = view_labels != -1
    V, B = view_labels.shape
    # one column per (view, id): same = O O^T counts the views where a pair shares an id, and
    # both = H H^T those labelling both (two products instead of V rounds of B x B comparisons)
    held = has.T  # (B, V)
    width = int(view_labels.max().clamp_min(0)) + 1
    codes = (view_labels.T + width * torch.arange(V, device=view_labels.device))[held]  # Gaussian-major
    columns, column = torch.unique(codes, return_inverse=True)
    onehot = torch.zeros(B, columns.numel(), device=view_labels.device)
    onehot[torch.nonzero(held)[:, 0], column] = 1.0
    same = onehot @ onehot.T
    both = held.float() @ held.float().T
    together = same >= join * both
    here = view_labels[view][:, None] == view_labels[view][None, :]
    return (both < min_views) | (here == together)


@dataclass(frozen=True)
class NeighbourTargets:
    """Eq. 10's targets of a batch: the mean unit activation of each Gaussian's kept neighbours."""

    mean: torch.Tensor
    """(B, D) mean of the kept neighbours' unit activations (0 where none is kept)."""
    rows: torch.Tensor | None
    """(B,) bool: rows with a kept neighbour (None: all)."""

    @classmethod
    def gather(cls, unit: torch.Tensor, near: torch.Tensor, keep: torch.Tensor | None = None) -> "NeighbourTargets":
        """``unit`` (P, D) unit activations, ``near`` (B, k) rows of it, ``keep`` optional (B, k) bool.
        A weighted embedding bag: the (B, k, D) neighbour block is never materialised."""
        if keep is not None and keep.shape != near.shape:
            raise ValueError(f"keep must be {tuple(near.shape)}, got {tuple(keep.shape)}")
        unit = unit.detach()
        weight = None if keep is None else keep.to(unit.dtype)
        total = F.embedding_bag(near, unit, per_sample_weights=weight, mode="sum")
        if keep is None:
            return cls(total / near.shape[1], None)
        return cls(total / weight.sum(1, keepdim=True).clamp_min(1.0), keep.any(1))


def smoothness(features: torch.Tensor, targets: NeighbourTargets) -> torch.Tensor:
    """Eq. 10: 1 - cos(a_i, mean of i's kept neighbours), mean over the rows with one; 0 if none."""
    if targets.rows is None:
        return (1 - F.cosine_similarity(features, targets.mean, dim=-1, eps=1e-8)).mean()
    if not targets.rows.any():
        return features.sum() * 0.0
    rows = targets.rows
    return (1 - F.cosine_similarity(features[rows], targets.mean[rows], dim=-1, eps=1e-8)).mean()


def knn_smoothness(features: torch.Tensor, neighbour_features: torch.Tensor,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """features (B, D); neighbour_features (B, k, D): 1 - cos(a_i, mean of neighbours), mean over B.

    ``keep``: optional (B, k) bool, the neighbours that count (e.g. those not labelled as another
    object: at a contact, the touching object's Gaussians would otherwise pull a Gaussian
    towards that object's activations). Rows with no kept neighbour are left out; 0 if none.
    (Shaping gathers the neighbours from a table instead: NeighbourTargets.gather.)
    """
    b, k, d = neighbour_features.shape
    unit = F.normalize(neighbour_features.detach(), dim=-1).reshape(b * k, d)
    near = torch.arange(b * k, device=unit.device).reshape(b, k)
    return smoothness(features, NeighbourTargets.gather(unit, near, keep))


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
    sums, counts = object_unit_sums(features, labels, ids)
    means = sums / counts[:, None]
    return means @ means.T, ids


def object_unit_sums(features: torch.Tensor, labels: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """((K, d) sum of the unit features of each object in ``ids``, (K,) its member count): sums
    over row chunks add up, so callers can stream the rows."""
    pos = torch.full((max(ids, default=-1) + 2,), -1, dtype=torch.long, device=features.device)
    pos[torch.tensor(ids, dtype=torch.long, device=features.device)] = torch.arange(len(ids), device=features.device)
    slot = pos[labels.long().clamp(-1, pos.numel() - 1)]  # unlabelled or not in ids: the spare last entry, -1
    keep = slot >= 0
    unit = F.normalize(features[keep].float(), dim=-1, eps=1e-8)
    sums = torch.zeros(len(ids), features.shape[1], device=features.device).index_add_(0, slot[keep], unit)
    return sums, torch.bincount(slot[keep], minlength=len(ids)).to(sums.dtype)
