"""Render a dataset split of a plain 3DGS PLY (or a fitted run) to ``OUT/<view name>.png``."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from structgs.pipeline.runs import Run
from structgs.render.api import rasterize, render_gaussians
from structgs.scene.dataset import load_dataset
from structgs.scene.gaussians import Gaussians
from structgs.scene.images import save_rgb
from structgs.scene.ply import read_ply
from structgs.utils.device import resolve_device
from structgs.utils.log import get_logger

log = get_logger("render")


def load_selection(path: Path, n: int) -> torch.Tensor:
    """A boolean (N,) selection from a .npy of booleans or of Gaussian ids (errors name the file)."""
    from structgs.edit.selection import from_file

    return from_file(path, n)


def render_selection_mask(means, quats, scales, opacities, selected: torch.Tensor, camera, backend="auto") -> torch.Tensor:
    """(H, W) bool: selected Gaussians white, others black but still occluding, threshold 0.5."""
    feat = selected.to(means.dtype)[:, None]
    out = rasterize(means, quats, scales, opacities, feat, camera, backend=backend)
    return out.image[..., 0] >= 0.5


def _save_mask(mask: torch.Tensor, path: Path) -> None:
    save_rgb(mask.float()[..., None].expand(-1, -1, 3), path)


@torch.no_grad()
def render_ply_views(data: Path, ply: Path, split: str, out: Path, selection: Path | None = None,
                     background=(1.0, 1.0, 1.0), downscale: float = 1.0, backend: str = "auto",
                     device: str = "auto") -> list[Path]:
    dev = resolve_device(device)
    ds = load_dataset(data, downscale=downscale, background=tuple(background))
    cams = ds.split(split)
    g: Gaussians = read_ply(ply).to(dev)
    sel = load_selection(selection, len(g)).to(dev) if selection is not None else None
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    written = []
    for cam in tqdm(cams, desc=f"rendering {split}"):
        path = Path(out) / f"{cam.name}.png"
        if sel is not None:
            _save_mask(render_selection_mask(g.means, g.quats, g.scales, g.opacities, sel, cam, backend), path)
        else:
            save_rgb(render_gaussians(g, cam, background=bg, backend=backend).image, path)
        written.append(path)
    log.info("wrote %d images to %s", len(written), out)
    return written


@torch.no_grad()
def render_run_views(run: Path, split: str, out: Path, data: Path | None = None, selection: Path | None = None,
                     background=None, downscale: float | None = None, backend: str = "auto",
                     device: str = "auto") -> list[Path]:
    opened = Run.open(run, data, device, downscale=downscale, background=background)
    model, ds, dev = opened.model, opened.dataset, opened.model.device
    sel = load_selection(selection, model.num_gaussians).to(dev) if selection is not None else None
    bg = torch.tensor(ds.background, dtype=torch.float32, device=dev)
    written, cams = [], ds.split(split)
    if sel is None:
        for cam, rendered in tqdm(model.render_views(cams, background=bg, backend=backend), total=len(cams),
                                  desc=f"rendering {split}"):
            path = Path(out) / f"{cam.name}.png"
            save_rgb(rendered.image, path)
            written.append(path)
    else:
        geometry = model.geometry_by_view()
        for cam in tqdm(cams, desc=f"rendering {split}"):
            g = geometry(cam)
            path = Path(out) / f"{cam.name}.png"
            _save_mask(render_selection_mask(g.means, g.quats, g.scales, g.opacities, sel, cam, backend), path)
            written.append(path)
    log.info("wrote %d images to %s", len(written), out)
    return written
