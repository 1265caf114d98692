"""SAM 2 through ``transformers``: a promptable image segmenter and a video tracker.

Pre/post-processing is done here in plain torch (transformers' SAM 2 processors need
torchvision): views are resized to the model's square input and ImageNet-normalised, prompts
are scaled to that input, low-resolution mask logits are resized back to the view.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from structgs.masks.automatic import AutoMaskConfig, generate_masks
from structgs.masks.base import MaskProposal
from structgs.masks.weights import load_local, to_pixel_values


def _input_size(config) -> int:
    size = getattr(config, "image_size", None) or config.prompt_encoder_config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


class Sam2Segmenter:
    """SAM 2 image predictor: ``set_image`` once per view, then prompts (see masks.base.Segmenter)."""

    def __init__(self, model, auto_config: AutoMaskConfig | None = None):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.size = int(model.config.prompt_encoder_config.image_size)
        self.auto_config = auto_config or AutoMaskConfig()
        self.embeddings: list[torch.Tensor] | None = None
        self.hw = (0, 0)

    @classmethod
    def from_pretrained(cls, weights: str | Path, device="cpu", auto_config: AutoMaskConfig | None = None):
        from transformers import Sam2Model

        return cls(load_local(Sam2Model, weights, "sam2", device), auto_config)

    @torch.no_grad()
    def set_image(self, name: str, image: torch.Tensor) -> None:
        self.hw = (int(image.shape[0]), int(image.shape[1]))
        self.embeddings = self.model.get_image_embeddings(to_pixel_values(image, (self.size, self.size), self.device))

    def _scale(self, xy: torch.Tensor) -> torch.Tensor:
        h, w = self.hw
        return xy * torch.tensor([self.size / w, self.size / h], dtype=torch.float32)

    @torch.no_grad()
    def _decode(self, points=None, labels=None, boxes=None, multimask=True) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (P, M, H, W) at the view's size and predicted IoUs (P, M)."""
        if self.embeddings is None:
            raise RuntimeError("Sam2Segmenter: call set_image(name, image) first")
        out = self.model(image_embeddings=self.embeddings,
                         input_points=None if points is None else points.to(self.device),
                         input_labels=None if labels is None else labels.to(self.device),
                         input_boxes=None if boxes is None else boxes.to(self.device), multimask_output=multimask)
        low = out.pred_masks[0]  # (P, M, h, w)
        logits = F.interpolate(low.float(), size=self.hw, mode="bilinear", align_corners=False)
        return logits.cpu(), out.iou_scores[0].float().cpu()

    def automatic(self) -> list[MaskProposal]:
        def predict(points: torch.Tensor):
            pts = self._scale(points)[None, :, None, :]  # (1, P, 1, 2): one point per prompt
            labels = torch.ones(1, points.shape[0], 1, dtype=torch.int64)
            return self._decode(pts, labels)

        return generate_masks(predict, *self.hw, self.auto_config)

    def from_points(self, points: torch.Tensor, labels: torch.Tensor) -> MaskProposal:
        pts = self._scale(points.float())[None, None]  # (1, 1, K, 2): one prompt of K points
        lab = labels.to(torch.int64)[None, None]
        logits, ious = self._decode(pts, lab, multimask=points.shape[0] == 1)
        best = int(ious[0].argmax())
        return MaskProposal(logits[0, best] > 0, float(ious[0, best]))

    def from_box(self, box: torch.Tensor) -> MaskProposal:
        b = box.float().view(2, 2)
        b = self._scale(b).view(1, 1, 4)
        logits, ious = self._decode(boxes=b, multimask=False)
        return MaskProposal(logits[0, 0] > 0, float(ious[0, 0]))


class Sam2VideoTracker:
    """SAM 2 video memory over views ordered by camera proximity (see masks.base.Tracker)."""

    def __init__(self, model):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.size = _input_size(model.config)
        self.session = None
        self.hw = (0, 0)
        self.pending: set[int] = set()

    @classmethod
    def from_pretrained(cls, weights: str | Path, device="cpu"):
        from transformers import Sam2VideoModel

        return cls(load_local(Sam2VideoModel, weights, "sam2_video", device))

    def start(self, names: list[str], images: list[torch.Tensor]) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.hw = (int(images[0].shape[0]), int(images[0].shape[1]))
        frames = torch.cat([to_pixel_values(im, (self.size, self.size)) for im in images])
        self.session = Sam2VideoInferenceSession(video=frames, video_height=self.hw[0], video_width=self.hw[1],
                                                 inference_device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def condition(self, frame: int, masks: dict[int, torch.Tensor]) -> None:
        s = self.session
        for oid, m in masks.items():
            idx = s.obj_id_to_idx(int(oid))
            small = F.interpolate(m.float()[None, None], size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)
            s.add_mask_inputs(idx, frame, (small >= 0.5).float())
            s.remove_point_inputs(idx, frame)
        s.obj_with_new_inputs = [int(o) for o in masks]
        if masks:
            self.model(s, frame_idx=frame)  # encode the new masks into the memory bank

    @torch.no_grad()
    def track(self, frame: int) -> dict[int, torch.Tensor]:
        if self.session is None:
            raise RuntimeError("Sam2VideoTracker: call start() first")
        if self.session.get_obj_num() == 0:
            return {}
        out = self.model(self.session, frame_idx=frame)
        logits = F.interpolate(out.pred_masks.float(), size=self.hw, mode="bilinear", align_corners=False)
        present = out.object_score_logits.reshape(-1) > 0
        result = {}
        for k, oid in enumerate(out.object_ids):
            m = (logits[k, 0] > 0).cpu()
            if present[k] and m.any():
                result[int(oid)] = m
        return result
