"""Mask sources: a user's images -> consistent id masks for shaping and voting.

Segmenters (SAM 2, or an oracle over existing masks), trackers (SAM 2 video memory, or the
scene's Gaussians), a text detector (Grounding DINO), the automatic mask generator, and the
cross-view association / prompted propagation that turn them into one id per object.
"""

from structgs.masks.association import AssociationConfig, MaskSequence, associate, propagate_prompt
from structgs.masks.automatic import AutoMaskConfig, generate_masks, mask_nms, point_grid, stability_score
from structgs.masks.base import MaskProposal, interior_points, mask_iou_matrix, paint_id_map
from structgs.masks.oracle import OracleDetector, OracleSegmenter
from structgs.masks.propagation import GaussianTracker, order_views

__all__ = ["AssociationConfig", "AutoMaskConfig", "GaussianTracker", "MaskProposal", "MaskSequence",
           "OracleDetector", "OracleSegmenter", "associate", "generate_masks", "interior_points",
           "mask_iou_matrix", "mask_nms", "order_views", "paint_id_map", "point_grid", "propagate_prompt",
           "stability_score"]
