"""Grounding DINO through ``transformers``: text prompt -> boxes on a view (see masks.base.Detector)."""

from __future__ import annotations

from pathlib import Path

import torch

from structgs.masks.weights import load_local, to_pixel_values
from structgs.utils.errors import InputError


def prompt_text(text: str) -> str:
    """Grounding DINO expects lower-case phrases each ending with a period."""
    t = text.strip().lower()
    if not t:
        raise InputError("text prompt is empty")
    return t if t.endswith(".") else t + "."


class GroundingDinoDetector:
    def __init__(self, model, tokenizer, box_threshold: float = 0.35, shortest_edge: int = 800,
                 longest_edge: int = 1333):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = next(model.parameters()).device
        self.box_threshold = box_threshold
        self.shortest_edge, self.longest_edge = shortest_edge, longest_edge

    @classmethod
    def from_pretrained(cls, weights: str | Path, device="cpu", **kwargs) -> GroundingDinoDetector:
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection

        model = load_local(GroundingDinoForObjectDetection, weights, "grounding_dino", device)
        tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
        return cls(model, tokenizer, **kwargs)

    def _input_size(self, h: int, w: int) -> tuple[int, int]:
        s = min(self.shortest_edge / min(h, w), self.longest_edge / max(h, w))
        return max(1, round(h * s)), max(1, round(w * s))

    @torch.no_grad()
    def detect(self, name: str, image: torch.Tensor, text: str) -> list[tuple[torch.Tensor, float]]:
        h, w = int(image.shape[0]), int(image.shape[1])
        pixels = to_pixel_values(image, self._input_size(h, w), self.device)
        enc = self.tokenizer([prompt_text(text)], return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(pixel_values=pixels, pixel_mask=torch.ones(pixels.shape[0], *pixels.shape[2:],
                                                                    dtype=torch.long, device=self.device), **enc)
        # score of a box = its best probability over the prompt's word tokens (not [CLS]/[SEP]/".")
        ids = enc["input_ids"][0]
        special = set(self.tokenizer.all_special_ids) | set(self.tokenizer.convert_tokens_to_ids(["."]))
        words = torch.tensor([int(i) not in special for i in ids], device=self.device)
        probs = out.logits[0, :, : ids.numel()].sigmoid()[:, words]
        scores = probs.max(-1).values if probs.numel() else torch.zeros(out.logits.shape[1])
        cx, cy, bw, bh = out.pred_boxes[0].unbind(-1)
        boxes = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
        keep = torch.nonzero(scores >= self.box_threshold).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True)]
        return [(boxes[i].clamp_min(0).cpu(), float(scores[i])) for i in keep.tolist()]
