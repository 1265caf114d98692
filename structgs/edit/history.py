"""One undo stack for every editor: each edit is recorded as the values of the tensors it
changed, before and after, so undo, redo and reset restore them bit for bit."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from structgs.utils.errors import InputError


@dataclass
class EditRecord:
    """One edit: its kind (remove, recolor, move), the tensors it changed (by name, before and
    after) and what the editor reports about it (selection sizes, targets, achieved values)."""

    kind: str
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


class EditHistory:
    """Undo/redo/reset over a model's named parameters and buffers. Editors of one model share
    one history, so edits of any kind undo in the order they were made."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.done: list[EditRecord] = []
        self.undone: list[EditRecord] = []
        self.tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        self._original = {k: v.detach().clone() for k, v in self.tensors.items()}

    def name_of(self, tensor: torch.Tensor) -> str:
        return next(k for k, v in self.tensors.items() if v is tensor)

    def begin(self, kind: str, names: list[str], **info) -> EditRecord:
        """Snapshot ``names`` before an edit changes them."""
        return EditRecord(kind, {k: self.tensors[k].detach().clone() for k in names}, info=info)

    def commit(self, rec: EditRecord) -> EditRecord:
        """Record the edit's result; a new edit drops what was undone."""
        rec.after = {k: self.tensors[k].detach().clone() for k in rec.before}
        self.done.append(rec)
        self.undone.clear()
        return rec

    def _assign(self, values: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in values.items():
                self.tensors[k].copy_(v)

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
        """Back to the model as it was when the history was made."""
        self._assign(self._original)
        self.done.clear()
        self.undone.clear()


class UsesHistory:
    """Undo, redo and reset of an editor, delegated to its ``history`` (shared by all editors)."""

    history: EditHistory

    def undo(self) -> EditRecord:
        return self.history.undo()

    def redo(self) -> EditRecord:
        return self.history.redo()

    def reset(self) -> None:
        self.history.reset()
