"""Editing: selections, shaped segmentation (Jacobian cosine), weight-perturbation edits with an
undo stack, and the masked-gradient voting comparison mode."""

from structgs.edit.editor import DEFAULT_THRESHOLD, SceneEditor
from structgs.edit.selection import EmptySelectionError, from_file, from_ids, from_mask, from_pixels

__all__ = ["DEFAULT_THRESHOLD", "EmptySelectionError", "SceneEditor", "from_file", "from_ids", "from_mask",
           "from_pixels"]
