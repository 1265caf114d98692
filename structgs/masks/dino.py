"""DINOv2 patch features through ``transformers`` (weights from a local directory only).

An image is resized so that its longer side spans ``patches`` patches (keeping its aspect;
each side a multiple of the patch size, 14 for DINOv2), ImageNet-normalised, and the last
hidden state's patch tokens come back as an (h, w, C) grid of unit vectors, the features the
affordance transfer compares by cosine (structgs.edit.affordance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from structgs.masks.weights import load_local, to_pixel_values


class PatchFeatures(Protocol):
    """Anything that turns an (H, W, 3) image in [0, 1] into an (h, w, C) grid of unit features."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


class Dinov2Features:
    """DINOv2 patch tokens of an image (see the module docstring)."""

    def __init__(self, model, patches: int = 32):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.patch = int(model.config.patch_size)
        self.patches = int(patches)

    @classmethod
    def from_pretrained(cls, weights: str | Path, device="cpu", patches: int = 32) -> Dinov2Features:
        from transformers import Dinov2Model

        return cls(load_local(Dinov2Model, weights, "dinov2", device), patches)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) patches for an image of that size: the longer side gets ``patches``."""
        scale = self.patches / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = self.grid(int(image.shape[0]), int(image.shape[1]))
        x = to_pixel_values(image, (h * self.patch, w * self.patch), self.device)
        tokens = self.model(pixel_values=x).last_hidden_state[0]  # (1 + h*w, C): CLS first
        patches = tokens[-h * w:].reshape(h, w, -1).float().cpu()
        return F.normalize(patches, dim=-1)
