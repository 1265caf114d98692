"""Editing: selections, shaped segmentation (Jacobian cosine), weight-perturbation edits and the
voting baseline's direct edits behind one protocol with one undo stack, and the masked-gradient
voting comparison mode."""

from structgs.edit.direct import DirectEditor
from structgs.edit.editor import METHODS, Editor, WeightEditor, make_editor
from structgs.edit.history import EditHistory, EditRecord
from structgs.edit.segmentation import (DEFAULT_THRESHOLD, SegmentationQuery, ShapedSegmentation, VotingSegmentation,
                                        segmentation)
from structgs.edit.selection import EmptySelectionError, from_file, from_ids, from_mask, from_pixels

__all__ = ["DEFAULT_THRESHOLD", "METHODS", "DirectEditor", "EditHistory", "EditRecord", "Editor", "EmptySelectionError",
           "SegmentationQuery", "ShapedSegmentation", "VotingSegmentation", "WeightEditor", "from_file", "from_ids",
           "from_mask", "from_pixels", "make_editor", "segmentation"]
