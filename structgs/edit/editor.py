"""One editing API over a scene model: segment, remove, recolor, move; undo/redo/reset.

``method="shaped"``: segmentation by Jacobian cosine; edits are weight deltas on the
perturbable layer of the opacity / color / motion branch (docs/method.md §4), solved so that the
selection reaches its target and re-linearised a few times.
Other methods (``voting``, ``projection``, ``binary``) select Gaussians by masked-gradient
voting and edit them directly (per-Gaussian overrides), so both are used the same way.

Every edit is recorded as the values of the tensors it changed, before and after, so undo,
redo and reset restore them bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from structgs.edit.jacobian import jacobian_cosine
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError

log = get_logger("edit")
SELECTION_WEIGHT = 100.0
"""Row weight of the selections' targets against the pinned groups' in the edit solve."""
LSTSQ_RCOND = 1e-6
"""Singular values below this fraction of the largest are dropped in the edit solve, so nearly
collinear directions (e.g. two pinned groups that respond alike) cannot blow eta up."""
DEFAULT_THRESHOLD = 0.5
"""Shaped segmentation keeps Gaussians with cos(J_i, Jbar_S) above this. Shaped activations
sit near 1 within an object and near 0 across objects, so the midpoint separates them."""


@dataclass
class EditRecord:
    kind: str
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


class SceneEditor:
    def __init__(self, model, method: str = "shaped", threshold: float = DEFAULT_THRESHOLD, pin_rest: bool = True,
                 pin_groups: int = 4):
        if method not in ("shaped", "voting", "projection", "binary"):
            raise InputError(f"unknown method {method!r} (shaped, voting, projection, binary)")
        if pin_groups < 1:
            raise InputError(f"pin_groups must be >= 1, got {pin_groups}")
        self.model, self.method, self.threshold, self.pin_rest = model, method, threshold, pin_rest
        self.pin_groups = pin_groups
        self.done: list[EditRecord] = []
        self.undone: list[EditRecord] = []
        self._tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        self._original = {k: v.detach().clone() for k, v in self._tensors.items()}

    # --- segmentation -------------------------------------------------------------------
    def scores(self, selection: torch.Tensor, branch: str | None = None, channel: int = 0) -> torch.Tensor:
        """Raw shaped-segmentation scores cos(J_i, Jbar_S) (N,)."""
        return jacobian_cosine(self.model, selection, branch, channel)

    def segment(self, selection: torch.Tensor, branch: str | None = None, threshold: float | None = None) -> torch.Tensor:
        """(N,) bool: the object(s) the selection belongs to (the selection itself included)."""
        if self.method != "shaped":
            raise InputError(f"method {self.method!r} segments by voting: use structgs.edit.voting.segment_by_voting")
        s = self.scores(selection, branch)
        return (s > (self.threshold if threshold is None else threshold)).cpu() | selection.cpu()

    # --- bookkeeping --------------------------------------------------------------------
    def _begin(self, kind: str, names: list[str], **info) -> EditRecord:
        return EditRecord(kind, {k: self._tensors[k].detach().clone() for k in names}, info=info)

    def _commit(self, rec: EditRecord) -> EditRecord:
        rec.after = {k: self._tensors[k].detach().clone() for k in rec.before}
        self.done.append(rec)
        self.undone.clear()
        return rec

    def _assign(self, values: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in values.items():
                self._tensors[k].copy_(v)

    def undo(self) -> EditRecord:
        if not self.done:
            raise InputError("nothing to undo")
        rec = self.done.pop()
        self._assign(rec.before)
        self.undone.append(rec)
        return rec

    def redo(self) -> EditRecord:
        if not self.undone:
            raise InputError("nothing to redo")
        rec = self.undone.pop()
        self._assign(rec.after)
        self.done.append(rec)
        return rec

    def reset(self) -> None:
        self._assign(self._original)
        self.done.clear()
        self.undone.clear()

    # --- edits --------------------------------------------------------------------------
    def remove(self, selections) -> EditRecord:
        sels = _as_list(selections)
        if self.method != "shaped":
            return self._direct("remove", sels, lambda m, s, k: m.override_opacity.__setitem__(s, 0.0),
                                ["override_opacity"])
        return self._solve("remove", "opacity", sels, [[0.0]] * len(sels), channels=[0], iters=30, tol=0.005)

    def recolor(self, selections, rgb, view: torch.Tensor | None = None) -> EditRecord:
        sels = _as_list(selections)
        rgb = torch.as_tensor(rgb, dtype=torch.float32)
        targets = rgb.reshape(-1, 3).expand(len(sels), 3) if rgb.numel() == 3 else rgb.reshape(len(sels), 3)
        if ((targets < 0) | (targets > 1)).any():
            raise InputError(f"colours must be in [0, 1], got {targets.tolist()}")
        if self.method != "shaped":
            def apply(m, s, k):  # selection k gets its own colour
                m.override_color[s] = targets[k].to(m.override_color)
                m.override_color_mask[s] = 1.0
            return self._direct("recolor", sels, apply, ["override_color", "override_color_mask"])
        return self._solve("recolor", "color", sels, targets.tolist(), channels=[0, 1, 2], iters=12, tol=0.01, view=view)

    def move(self, selections, translation) -> EditRecord:
        sels = _as_list(selections)
        t = torch.as_tensor(translation, dtype=torch.float32)
        deltas = t.reshape(-1, 3).expand(len(sels), 3) if t.numel() == 3 else t.reshape(len(sels), 3)
        if self.method != "shaped":
            def apply(m, s, k):  # selection k moves by its own translation
                m.override_offset[s] += deltas[k].to(m.override_offset)
            return self._direct("move", sels, apply, ["override_offset"])
        with torch.no_grad():
            cur = torch.stack([self.model.decode(index=torch.nonzero(s).flatten().to(self.model.device)).offsets.mean(0)
                               for s in sels]).cpu()
        return self._solve("move", "motion", sels, (cur + deltas).tolist(), channels=[0, 1, 2], iters=3, tol=1e-5)

    def _direct(self, kind, sels, apply, names) -> EditRecord:
        rec = self._begin(kind, names, method=self.method, selected=[int(s.sum()) for s in sels])
        with torch.no_grad():
            for k, s in enumerate(sels):
                apply(self.model, s.to(self.model.device), k)
        return self._commit(rec)

    def _core(self, selection: torch.Tensor, branch: str, channel: int, view) -> torch.Tensor:
        """The members of ``selection`` whose Jacobian is aligned with the selection's mean
        Jacobian (cos > threshold): a robust mean, so a few stray members (e.g. ground
        Gaussians caught at a contact) cannot steer the edit direction."""
        if int(selection.sum()) < 4:
            return selection
        scores = jacobian_cosine(self.model, selection, branch, channel, view).cpu()
        core = selection.cpu() & (scores > self.threshold)
        return core if int(core.sum()) >= max(1, int(selection.sum()) // 4) else selection

    def _branch_outputs(self, branch: str, idx: torch.Tensor, view) -> torch.Tensor:
        s = self.model.decode(index=idx, view=view)
        return {"opacity": s.opacities[:, None], "color": s.colors, "motion": s.offsets}[branch]

    def _group_means(self, branch: str, idxs: list[torch.Tensor], channels: list[int], view) -> torch.Tensor:
        """(K, C) mean of ``channels`` of ``branch``'s output over each index group."""
        return torch.stack([self._branch_outputs(branch, idx, None if view is None else view[idx])[:, channels].mean(0)
                            for idx in idxs])

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
        name = next(k for k, v in self._tensors.items() if v is W)
        rec = self._begin(kind, [name], branch=branch, selected=[int(s.sum()) for s in sels], targets=targets)
        tgt = torch.tensor(targets, dtype=W.dtype, device=W.device)  # (K, C)
        idxs = [torch.nonzero(self._core(s, branch, channels[0], view)).flatten().to(W.device) for s in sels]
        rec.info["core"] = [int(i.numel()) for i in idxs]
        rest = ~torch.stack(sels).any(0)
        if not self.pin_rest or rest.sum() == 0:
            self._iterate(W, branch, idxs, tgt, channels, len(sels), iters, tol, view)
        else:
            # "keep the rest": more selections whose targets are their current means. Their
            # mean-Jacobian directions cancel the first-order leakage onto everything else.
            ridx = torch.nonzero(rest).flatten().to(W.device)
            rview = None if view is None else view[ridx]
            rest_before = self._branch_outputs(branch, ridx, rview)[:, channels]
            W0, cands = W.detach().clone(), []
            for n_groups in sorted({1, self.pin_groups}):
                W.copy_(W0)
                groups = [ridx]
                if n_groups > 1:
                    lab = cosine_kmeans(m.activations(branch, ridx, rview), n_groups)
                    groups = [ridx[lab == g] for g in lab.unique().tolist()]
                now = self._group_means(branch, groups, channels, view)
                sel_err = self._iterate(W, branch, idxs + groups, torch.cat([tgt, now]), channels, len(sels), iters,
                                        tol, view)
                change = float((self._branch_outputs(branch, ridx, rview)[:, channels] - rest_before).abs().mean())
                cands.append((sel_err, change, n_groups, W.detach().clone()))
            # the stillest rest among the solutions that reach the selections' targets
            reach = max(10 * tol, 2 * min(c[0] for c in cands))
            best = min((c for c in cands if c[0] <= reach), key=lambda c: c[1])
            W.copy_(best[3])
            rec.info.update(pinned_groups=best[2], rest_mean_change=best[1])
        final = self._group_means(branch, idxs, channels, view)
        rec.info["achieved"] = final.tolist()
        return self._commit(rec)

    def _iterate(self, W, branch: str, idxs: list[torch.Tensor], tgt: torch.Tensor, channels: list[int], n_sel: int,
                 iters: int, tol: float, view) -> float:
        """Gauss-Newton on the group means: the first ``n_sel`` groups are the selections (hard
        targets), the rest pinned groups (soft). Returns the selections' final max error."""
        m = self.model
        K, C = len(idxs), len(channels)
        for it in range(iters):
            jbars = []
            err = tgt - self._group_means(branch, idxs, channels, view)
            if err.abs().max() < tol:
                break
            per_sel = []
            for idx in idxs:
                v = None if view is None else view[idx]
                per_sel.append([m.output_deltas(branch, c, index=idx, view=v) for c in channels])
            for k in range(K):
                for ci in range(C):
                    d, a = per_sel[k][ci]
                    jbars.append(d.T @ a / idxs[k].numel())
            # M[(k, c'), (l, c)] = mean_{i in S_k} delta_i^{c' T} Jbar_l^c a_i
            M = torch.zeros(K * C, K * C, dtype=W.dtype, device=W.device)
            for k in range(K):
                for cp in range(C):
                    d, a = per_sel[k][cp]
                    for j, jb in enumerate(jbars):
                        M[k * C + cp, j] = ((d @ jb) * a).sum(-1).mean()
            # the selections' targets are hard, the pinned groups soft: weighted least squares
            # (a group that cannot keep still must not stop the selection from reaching its target)
            wrow = torch.ones(K * C, 1, dtype=W.dtype, device=W.device)
            wrow[: n_sel * C] = SELECTION_WEIGHT
            eta = torch.linalg.lstsq(M * wrow, err.reshape(-1, 1) * wrow, rcond=LSTSQ_RCOND, driver="gelsd").solution.flatten()
            dW = sum(e * jb for e, jb in zip(eta, jbars))
            step = 1.0
            if branch != "motion":  # damp large steps so the linearisation stays trustworthy
                step = min(1.0, 0.5 * W.norm().item() / max(dW.norm().item(), 1e-12))
            W.add_(step * dW)
        return float((tgt - self._group_means(branch, idxs, channels, view))[:n_sel].abs().max())


def cosine_kmeans(x: torch.Tensor, k: int, iters: int = 15) -> torch.Tensor:
    """(N,) cluster ids of the rows of ``x`` by spherical k-means (deterministic farthest-point init)."""
    u = torch.nn.functional.normalize(x.float(), dim=-1)
    k = min(k, u.shape[0])
    centres = [u[0]]
    for _ in range(k - 1):  # farthest point (lowest max cosine) from the centres so far
        sim = torch.stack([u @ c for c in centres], -1).max(-1).values
        centres.append(u[int(sim.argmin())])
    c = torch.stack(centres)
    for _ in range(iters):
        lab = (u @ c.T).argmax(-1)
        for j in range(k):
            members = u[lab == j]
            if len(members):
                c[j] = torch.nn.functional.normalize(members.mean(0), dim=0)
    return (u @ c.T).argmax(-1)


def _as_list(selections) -> list[torch.Tensor]:
    sels = [selections] if isinstance(selections, torch.Tensor) else list(selections)
    for s in sels:
        if s.dtype != torch.bool or not bool(s.any()):
            raise InputError("each selection must be a non-empty boolean mask over the Gaussians")
    return sels
