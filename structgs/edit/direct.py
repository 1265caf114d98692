"""The voting baseline's edits: per-Gaussian overrides (opacity factor, colour, offset) on the
selected Gaussians themselves, behind the same protocol and undo stack as the weight editor."""

from __future__ import annotations

import torch

from structgs.edit.history import EditHistory, EditRecord, UsesHistory
from structgs.edit.selection import as_selection_list, per_selection
from structgs.utils.errors import InputError


class DirectEditor(UsesHistory):
    """Edits the Gaussians of each selection directly: what a selection from masked-gradient
    voting (or projection, binary) can do, having no decoder direction to perturb."""

    def __init__(self, model, history: EditHistory | None = None, method: str = "voting"):
        self.model, self.method = model, method
        self.history = history or EditHistory(model)

    def segment(self, selection: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        raise InputError(f"method {self.method!r} segments by voting: use structgs.edit.voting.segment_by_voting")

    def remove(self, selections) -> EditRecord:
        def apply(o, s, k):
            o.opacity[s] = 0.0
        return self._apply("remove", as_selection_list(selections), apply, ["opacity"])

    def recolor(self, selections, rgb, view: torch.Tensor | None = None) -> EditRecord:
        sels = as_selection_list(selections)
        targets = per_selection(rgb, len(sels))
        if ((targets < 0) | (targets > 1)).any():
            raise InputError(f"colours must be in [0, 1], got {targets.tolist()}")

        def apply(o, s, k):  # selection k gets its own colour
            o.color[s] = targets[k].to(o.color)
            o.color_mask[s] = 1.0
        return self._apply("recolor", sels, apply, ["color", "color_mask"])

    def move(self, selections, translation) -> EditRecord:
        sels = as_selection_list(selections)
        deltas = per_selection(translation, len(sels))

        def apply(o, s, k):  # selection k moves by its own translation
            o.offset[s] += deltas[k].to(o.offset)
        return self._apply("move", sels, apply, ["offset"])

    def _apply(self, kind, sels, apply, fields) -> EditRecord:
        names = [f"overrides.{f}" for f in fields]
        rec = self.history.begin(kind, names, method=self.method, selected=[int(s.sum()) for s in sels])
        with torch.no_grad():
            for k, s in enumerate(sels):
                apply(self.model.overrides, s.to(self.model.device), k)
        return self.history.commit(rec)

