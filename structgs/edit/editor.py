"""One editing API over a scene model: segment, remove, recolor, move; undo/redo/reset.

Two editors behind one protocol (:class:`Editor`) and one undo stack (:class:`EditHistory`):

* :class:`WeightEditor` (shaped runs): segmentation by Jacobian cosine; edits are weight
  deltas on the perturbable layer of the opacity / color / motion branch (docs/method.md §4),
  solved so that the selection reaches its target and re-linearised a few times.
* :class:`~structgs.edit.direct.DirectEditor` (the voting baseline: voting, projection,
  binary): the selected Gaussians are edited directly (per-Gaussian overrides).

:func:`make_editor` picks one by method name, so both are used the same way.
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm import tqdm

from structgs.edit.direct import DirectEditor
from structgs.edit.history import EditHistory, EditRecord, UsesHistory
from structgs.edit.selection import as_selection_list, per_selection
from structgs.edit.jacobian import jacobian_cosine
from structgs.edit.segmentation import DEFAULT_THRESHOLD, SegmentationQuery, ShapedSegmentation
from structgs.utils.errors import InputError
from structgs.utils.log import get_logger

log = get_logger("edit")
REMOVED_FRACTION = 0.1
"""A Gaussian whose decoded opacity the edits brought below this fraction of its opacity before
them counts as removed (``SceneModel.removed``): exports leave it out. (A removal solves for the
selection's mean opacity, so a few of its Gaussians keep a trace of opacity, ~0.005.)"""
SELECTION_WEIGHT = 100.0
"""Row weight of the selections' targets against the pinned groups' in the edit solve."""
LSTSQ_RCOND = 1e-6
"""Singular values below this fraction of the largest are dropped in the edit solve, so nearly
collinear directions (e.g. two pinned groups that respond alike) cannot blow eta up."""


METHODS = ("shaped", "voting", "projection", "binary")


class Editor(Protocol):
    """What every editor does; edits return their :class:`EditRecord`, undoable in order."""

    history: EditHistory

    def segment(self, selection: torch.Tensor, threshold: float | None = None) -> torch.Tensor: ...

    def remove(self, selections) -> EditRecord: ...

    def recolor(self, selections, rgb, view: torch.Tensor | None = None) -> EditRecord: ...

    def move(self, selections, translation) -> EditRecord: ...

    def undo(self) -> EditRecord: ...

    def redo(self) -> EditRecord: ...

    def reset(self) -> None: ...


def make_editor(model, method: str = "shaped", history: EditHistory | None = None, **options) -> Editor:
    """The editor for selections made by ``method``: a :class:`WeightEditor` for ``shaped``
    (``options``: threshold, pin_rest, pin_groups, progress), else a :class:`DirectEditor`."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r} ({', '.join(METHODS)})")
    if method == "shaped":
        return WeightEditor(model, history, **options)
    if options:
        raise InputError(f"method {method!r} edits directly and takes no options, got {sorted(options)}")
    return DirectEditor(model, history, method)


class WeightEditor(UsesHistory):
    """Shaped segmentation and edits as decoder-weight perturbations (see the module docstring)."""

    def __init__(self, model, history: EditHistory | None = None, threshold: float = DEFAULT_THRESHOLD,
                 pin_rest: bool = True, pin_groups: int = 4, progress: bool = False):
        if pin_groups < 1:
            raise InputError(f"pin_groups must be >= 1, got {pin_groups}")
        self.model, self.threshold, self.pin_rest, self.pin_groups = model, threshold, pin_rest, pin_groups
        self.progress = progress  # a progress bar over the solver's iterations (terminal)
        self.history = history or EditHistory(model)

    # --- segmentation -------------------------------------------------------------------
    def scores(self, selection: torch.Tensor, branch: str | None = None, channel: int = 0) -> torch.Tensor:
        """Raw shaped-segmentation scores cos(J_i, Jbar_S) (N,)."""
        return jacobian_cosine(self.model, selection, branch, channel)

    def segment(self, selection: torch.Tensor, threshold: float | None = None, branch: str | None = None) -> torch.Tensor:
        """(N,) bool: the object(s) the selection belongs to (the selection itself included)."""
        strategy = ShapedSegmentation(self.threshold if threshold is None else threshold, branch)
        return strategy(self.model, SegmentationQuery(seed=selection))


    # --- edits --------------------------------------------------------------------------
    def remove(self, selections) -> EditRecord:
        sels = as_selection_list(selections)
        return self._solve("remove", "opacity", sels, [[0.0]] * len(sels), channels=[0], iters=30, tol=0.005)

    def recolor(self, selections, rgb, view: torch.Tensor | None = None) -> EditRecord:
        sels = as_selection_list(selections)
        targets = per_selection(rgb, len(sels))
        if ((targets < 0) | (targets > 1)).any():
            raise InputError(f"colours must be in [0, 1], got {targets.tolist()}")
        return self._solve("recolor", "color", sels, targets.tolist(), channels=[0, 1, 2], iters=12, tol=0.01, view=view)

    def move(self, selections, translation) -> EditRecord:
        sels = as_selection_list(selections)
        deltas = per_selection(translation, len(sels))
        with torch.no_grad():
            cur = torch.stack([self.model.decode(index=torch.nonzero(s).flatten().to(self.model.device)).offsets.mean(0)
                               for s in sels]).cpu()
        return self._solve("move", "motion", sels, (cur + deltas).tolist(), channels=[0, 1, 2], iters=3, tol=1e-5)

    def _core(self, selection: torch.Tensor, branch: str, channel: int, view) -> torch.Tensor:
        """The members of ``selection`` whose Jacobian is aligned with the selection's mean
        Jacobian (cos > threshold): a robust mean, so a few stray members (e.g. ground
        Gaussians caught at a contact) cannot steer the edit direction."""
        if int(selection.sum()) < 4:
            return selection
        scores = jacobian_cosine(self.model, selection, branch, channel, view).cpu()
        core = selection.cpu() & (scores > self.threshold)
        return core if int(core.sum()) >= max(1, int(selection.sum()) // 4) else selection

    def _branch_outputs(self, branch: str, idx: torch.Tensor, view, acts: "_Activations") -> torch.Tensor:
        return self.model.edited_branch_output(branch, acts.of(idx, view), idx)

    def _group_means(self, branch: str, idxs: list[torch.Tensor], channels: list[int], view,
                     acts: "_Activations") -> torch.Tensor:
        """(K, C) mean of ``channels`` of ``branch``'s output over each index group."""
        return torch.stack([self._branch_outputs(branch, idx, None if view is None else view[idx], acts)[:, channels]
                            .mean(0) for idx in idxs])

    @torch.no_grad()
    def _solve(self, kind: str, branch: str, sels: list[torch.Tensor], targets, channels: list[int],
               iters: int, tol: float, view=None) -> EditRecord:
        """Find dW = sum_{k,c} eta_kc Jbar_{S_k}^c so that mean_{i in S_k} y_i^c = target_kc.

        Linearised: mean_{i in S_k} <J_i^{c'}, Jbar_l^c> eta_lc = target_kc' - current_kc',
        re-linearised ``iters`` times (the activations a_i never change: they enter W).
        With ``pin_rest`` the rest is held still by pinning its mean (one group, and with
        ``pin_groups`` > 1 also k-means groups of its activations, i.e. roughly the other
        objects); the solution that changes the rest least is kept.
        """
        m = self.model
        W = m.decoder.perturbable_weight(branch)
        acts = _Activations(m, branch)  # computed once per group: the solve changes only W
        rec = self.history.begin(kind, [self.history.name_of(W)], branch=branch, selected=[int(s.sum()) for s in sels], targets=targets)
        tgt = torch.tensor(targets, dtype=W.dtype, device=W.device)  # (K, C)
        idxs = [torch.nonzero(self._core(s, branch, channels[0], view)).flatten().to(W.device) for s in sels]
        rec.info["core"] = [int(i.numel()) for i in idxs]
        rest = ~torch.stack(sels).any(0)
        if not self.pin_rest or rest.sum() == 0:
            self._iterate(W, branch, idxs, tgt, channels, len(sels), iters, tol, view, acts)
        else:
            # "keep the rest": more selections whose targets are their current means. Their
            # mean-Jacobian directions cancel the first-order leakage onto everything else.
            ridx = torch.nonzero(rest).flatten().to(W.device)
            rview = None if view is None else view[ridx]
            rest_before = self._branch_outputs(branch, ridx, rview, acts)[:, channels]
            W0, cands = W.detach().clone(), []
            for n_groups in sorted({1, self.pin_groups}):
                W.copy_(W0)
                groups = [ridx]
                if n_groups > 1:
                    groups = acts.split(ridx, rview, cosine_kmeans(acts.of(ridx, rview), n_groups))
                now = self._group_means(branch, groups, channels, view, acts)
                sel_err = self._iterate(W, branch, idxs + groups, torch.cat([tgt, now]), channels, len(sels), iters,
                                        tol, view, acts)
                change = float((self._branch_outputs(branch, ridx, rview, acts)[:, channels] - rest_before).abs().mean())
                cands.append((sel_err, change, n_groups, W.detach().clone()))
            # the stillest rest among the solutions that reach the selections' targets
            reach = max(10 * tol, 2 * min(c[0] for c in cands))
            best = min((c for c in cands if c[0] <= reach), key=lambda c: c[1])
            W.copy_(best[3])
            rec.info.update(pinned_groups=best[2], rest_mean_change=best[1])
        final = self._group_means(branch, idxs, channels, view, acts)
        rec.info["achieved"] = final.tolist()
        return self.history.commit(rec)

    def _iterate(self, W, branch: str, idxs: list[torch.Tensor], tgt: torch.Tensor, channels: list[int], n_sel: int,
                 iters: int, tol: float, view, acts: "_Activations") -> float:
        """Gauss-Newton on the group means: the first ``n_sel`` groups are the selections (hard
        targets), the rest pinned groups (soft). Returns the selections' final max error."""
        m = self.model
        K, C = len(idxs), len(channels)
        for it in tqdm(range(iters), desc=f"solving the {branch} edit", disable=not self.progress, leave=False):
            err = tgt - self._group_means(branch, idxs, channels, view, acts)
            if err.abs().max() < tol:
                break
            jbars = []  # Jbar_k^c = mean_{i in S_k} delta_i^c a_i^T, ordered (k, c)
            for idx in idxs:
                v = None if view is None else view[idx]
                for c in channels:
                    d, a = m.output_deltas(branch, c, index=idx, view=v, activations=acts.of(idx, v))
                    jbars.append((d.T @ a / idx.numel()).flatten())
            flat = torch.stack(jbars)  # (K*C, out*in)
            # M[(k, c'), (l, c)] = mean_{i in S_k} delta_i^{c' T} Jbar_l^c a_i
            #                    = <mean_{i in S_k} delta_i^{c'} a_i^T, Jbar_l^c>_F = <Jbar_k^{c'}, Jbar_l^c>_F:
            # the Gram matrix of the mean Jacobians (no pass over the Gaussians)
            M = flat @ flat.T
            # the selections' targets are hard, the pinned groups soft: weighted least squares
            # (a group that cannot keep still must not stop the selection from reaching its target)
            wrow = torch.ones(K * C, 1, dtype=W.dtype, device=W.device)
            wrow[: n_sel * C] = SELECTION_WEIGHT
            # a (K*C)^2 system: solved on the CPU (CUDA's lstsq has no rank-revealing driver)
            eta = torch.linalg.lstsq((M * wrow).cpu(), (err.reshape(-1, 1) * wrow).cpu(), rcond=LSTSQ_RCOND,
                                     driver="gelsd").solution.flatten().to(W.device)
            dW = (eta @ flat).reshape(W.shape)
            step = 1.0
            if branch != "motion":  # damp large steps so the linearisation stays trustworthy
                step = min(1.0, 0.5 * W.norm().item() / max(dW.norm().item(), 1e-12))
            W.add_(step * dW)
        return float((tgt - self._group_means(branch, idxs, channels, view, acts))[:n_sel].abs().max())


class _Activations:
    """The activations entering ``branch``'s perturbable layer, per index group, computed on first
    use. An edit's solve changes only that layer's weight, so they stay valid for the whole
    solve: each Gauss-Newton step then runs only the layers after it (at 200k Gaussians the
    full decode of every group was two thirds of an edit's time)."""

    def __init__(self, model, branch: str):
        self.model, self.branch = model, branch
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def of(self, idx: torch.Tensor, view) -> torch.Tensor:
        hit = self._cache.get(id(idx))
        if hit is None or hit[0] is not idx:
            hit = (idx, self.model.activations(self.branch, idx, view))
            self._cache[id(idx)] = hit
        return hit[1]

    def split(self, idx: torch.Tensor, view, labels: torch.Tensor) -> list[torch.Tensor]:
        """``idx`` split into one index group per label, their activations taken from ``idx``'s
        (each row's activations depend on that row alone) rather than recomputed."""
        a = self.of(idx, view)
        groups = []
        for g in labels.unique().tolist():
            member = labels == g
            group = idx[member]
            self._cache[id(group)] = (group, a[member])
            groups.append(group)
        return groups


def cosine_kmeans(x: torch.Tensor, k: int, iters: int = 15) -> torch.Tensor:
    """(N,) cluster ids of the rows of ``x`` by spherical k-means (deterministic farthest-point init)."""
    u = torch.nn.functional.normalize(x.float(), dim=-1)
    k = min(k, u.shape[0])
    chosen = [0]
    nearest = u @ u[0]  # each row's highest cosine to a centre so far
    for _ in range(k - 1):  # farthest point: the lowest such cosine
        chosen.append(int(nearest.argmin()))
        nearest = torch.maximum(nearest, u @ u[chosen[-1]])
    c = u[chosen].clone()
    for _ in range(iters):
        lab = (u @ c.T).argmax(-1)
        sums = torch.zeros_like(c).index_add_(0, lab, u)  # a centre is its members' normalised mean
        filled = torch.bincount(lab, minlength=k)[:, None] > 0
        c = torch.where(filled, torch.nn.functional.normalize(sums, dim=-1), c)  # an empty cluster keeps its centre
    return (u @ c.T).argmax(-1)


@torch.no_grad()
def removal_marks(model, opacity_before: torch.Tensor) -> torch.Tensor:
    """(N,) bool on the model's device: Gaussians marked removed before, or brought below
    :data:`REMOVED_FRACTION` of ``opacity_before`` (their opacities before the edits) since."""
    now = model.decode_opacities()
    return model.removed | (now < REMOVED_FRACTION * opacity_before.to(now.device).reshape(-1))
