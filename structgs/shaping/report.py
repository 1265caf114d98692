"""What a shaping run reports: object x object activation cosines, test PSNR, and the lifting
(coverage, accuracy, how noisy the masks looked) in a few printable lines."""

from __future__ import annotations

import torch

from structgs.utils.metrics import psnr
from structgs.model import SceneModel
from structgs.scene.dataset import SceneDataset
from structgs.shaping.losses import object_unit_sums


REPORT_ROWS = 262144
"""Gaussians whose activations the report holds at a time (1M x 128 float32 would be 512 MB, and
its normalised copy as much again: the shape job's peak at 1M)."""


@torch.no_grad()
def activation_report(model: SceneModel, labels: torch.Tensor, cameras, branches, rows: int = REPORT_ROWS) -> dict:
    """Object x object mean activation cosine per branch (``losses.object_cosine_matrix``, streamed
    over ``rows`` Gaussians at a time), averaged over ``cameras``' view inputs (one pass for a
    branch that does not take the view: its activations are the same in every view)."""
    out = {}
    ids = sorted(int(k) for k in labels.unique() if k >= 0)
    n = model.num_gaussians
    for b in branches:
        mats = []
        for cam in (cameras if model.decoder.config.takes_view(b) else cameras[:1]):
            sums, counts = 0, 0
            for start in range(0, n, rows):
                idx = torch.arange(start, min(start + rows, n), device=model.device)
                s, c = object_unit_sums(model.activations(b, idx, camera=cam), labels[idx], ids)
                sums, counts = sums + s, counts + c
            means = sums / counts[:, None]
            mats.append(means @ means.T)
        mat = torch.stack(mats).mean(0)
        k = len(ids)
        off = mat[~torch.eye(k, dtype=torch.bool)]
        out[b] = {"ids": ids, "matrix": mat.tolist(), "within_min": float(mat.diagonal().min()),
                  "within_mean": float(mat.diagonal().mean()), "between_max": float(off.max()) if k > 1 else 0.0,
                  "between_mean": float(off.mean()) if k > 1 else 0.0}
    return out


@torch.no_grad()
def test_psnr(model: SceneModel, ds: SceneDataset) -> float:
    bg = torch.tensor(ds.background, dtype=torch.float32, device=model.device)
    cams = ds.split("test") if "test" in ds.cameras else ds.split("train")
    vals = [psnr(out.image, ds.image(c).to(model.device)) for c, out in model.render_views(cams, background=bg)]
    return sum(vals) / len(vals)


def format_lifting(lift: dict) -> str:
    """The lifting part of a shape report in a few lines, with a warning when the masks look noisy."""
    parts = [f"coverage {lift.get('coverage_filled', lift.get('coverage', 0)):.1%}"]
    if "num_ids" in lift or "objects" in lift:
        parts.append(f"{lift.get('objects', lift.get('num_ids'))} objects")
    for key, name in (("accuracy_filled", "accuracy vs ground truth"), ("accuracy_per_view", "per-view accuracy")):
        if key in lift:
            parts.append(f"{name} {lift[key]:.1%}")
    if lift.get("rest_label"):
        parts.append("one id per view: the rest of the scene is the negative class")
    lines = ["lifting: " + ", ".join(parts)]
    noise = lift.get("noise")
    if noise:
        lines.append(f"masks: estimated {noise['merges_per_view']:.2f} merges and {noise['splits_per_view']:.2f} "
                     f"splits per view; label confidence {noise['confidence_mean']:.2f} on average, "
                     f"{noise['low_confidence_fraction']:.1%} of Gaussians below 0.6")
        if noise["merges_per_view"] > 1 or noise["splits_per_view"] > 1 or noise["low_confidence_fraction"] > 0.3:
            lines.append("warning: the masks disagree a lot across views; check shape_report.json 'noise.views' "
                         "for the worst views and distrust segmentations near object contacts")
    return "\n".join(lines)


def format_matrix(entry: dict) -> str:
    ids = entry["ids"]
    lines = ["      " + " ".join(f"{i:>6d}" for i in ids)]
    for i, row in zip(ids, entry["matrix"]):
        lines.append(f"{i:>5d} " + " ".join(f"{v:6.3f}" for v in row))
    return "\n".join(lines)
