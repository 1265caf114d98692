"""Segmentation and image metrics (they live in ``structgs.utils.metrics``, below every layer that
uses them: fitting and shaping report PSNR, lifting scores its labels)."""

from structgs.utils.metrics import boundary_band, boundary_iou, iou, matched_agreement, psnr, ssim

__all__ = ["boundary_band", "boundary_iou", "iou", "matched_agreement", "psnr", "ssim"]
