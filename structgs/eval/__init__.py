"""Metrics: PSNR, SSIM, IoU, boundary IoU."""
