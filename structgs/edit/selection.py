"""Selections: which Gaussians an edit or a segmentation starts from.

A selection is a boolean mask over all Gaussians, built from Gaussian ids (a list, a .npy of
ids or of a boolean mask), from pixels of a named view (the Gaussian contributing most to
each pixel, as in Eq. 9), or from a 2D mask image of a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from structgs.render.api import contributions
from structgs.scene.cameras import Camera
from structgs.utils.errors import InputError, MissingFileError


class EmptySelectionError(ValueError):
    pass


def _nonempty(mask: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(mask.any()):
        raise EmptySelectionError(f"{what} selects no Gaussian")
    return mask


def from_ids(ids, num_gaussians: int) -> torch.Tensor:
    """Boolean (N,) mask from Gaussian ids or a boolean mask (tensor, array, list)."""
    arr = torch.as_tensor(np.asarray(ids))
    if arr.numel() == 0:
        raise EmptySelectionError("the selection is empty (no Gaussian id given)")
    if arr.dtype == torch.bool:
        if arr.shape != (num_gaussians,):
            raise InputError(f"boolean selection has shape {tuple(arr.shape)}, expected ({num_gaussians},)")
        return _nonempty(arr.clone(), "the boolean selection")
    if arr.ndim != 1 or arr.is_floating_point():
        raise InputError(f"expected a 1-D array of integer Gaussian ids, got {arr.dtype} {tuple(arr.shape)}")
    if arr.numel() and (int(arr.min()) < 0 or int(arr.max()) >= num_gaussians):
        raise InputError(f"Gaussian ids must be in [0, {num_gaussians}), got [{int(arr.min())}, {int(arr.max())}]")
    mask = torch.zeros(num_gaussians, dtype=torch.bool)
    mask[arr.long()] = True
    return _nonempty(mask, "the id list")


def from_file(path: str | Path, num_gaussians: int) -> torch.Tensor:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: selection file does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputError(f"{path}: not a .npy array ({e})") from e
    try:
        return from_ids(arr, num_gaussians)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from e


@torch.no_grad()
def top_gaussians(model, camera: Camera) -> torch.Tensor:
    """(H, W) id of the Gaussian with the largest alpha*T at each pixel (-1 if none); blending
    weights need the geometry alone, so the colour branch is not run."""
    g = model.decode_geometry(camera)
    return contributions(g.means, g.quats, g.scales, g.opacities, camera).pixel_top_gaussian


def from_pixels(model, camera: Camera, pixels: list[tuple[int, int]]) -> torch.Tensor:
    """The Gaussians contributing most to the given (x, y) pixels of ``camera``."""
    if not pixels:
        raise EmptySelectionError("no pixel given")
    for x, y in pixels:
        if not (0 <= x < camera.width and 0 <= y < camera.height):
            raise InputError(f"pixel ({x}, {y}) is outside view {camera.name} ({camera.width}x{camera.height})")
    top = top_gaussians(model, camera)
    ids = torch.tensor([int(top[y, x]) for x, y in pixels])
    ids = ids[ids >= 0]
    if ids.numel() == 0:
        raise EmptySelectionError(f"pixels {pixels} of view {camera.name} show no Gaussian (empty background)")
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool)
    mask[ids] = True
    return mask


def from_mask(model, camera: Camera, mask: torch.Tensor) -> torch.Tensor:
    """The top Gaussians of every pixel inside a 2D (H, W) mask of ``camera``."""
    if tuple(mask.shape) != (camera.height, camera.width):
        raise InputError(f"mask is {tuple(mask.shape)}, view {camera.name} is ({camera.height}, {camera.width})")
    top = top_gaussians(model, camera)
    ids = top[mask.bool().to(top.device) & (top >= 0)].unique()
    if ids.numel() == 0:
        raise EmptySelectionError(f"the mask of view {camera.name} covers no Gaussian")
    sel = torch.zeros(model.num_gaussians, dtype=torch.bool)
    sel[ids.cpu()] = True
    return sel


def load_mask_image(path: str | Path) -> torch.Tensor:
    """A 2D selection mask from a PNG: non-zero pixels are selected."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: mask image does not exist")
    try:
        arr = np.asarray(Image.open(path).convert("L"))
    except Exception as e:
        raise InputError(f"{path}: cannot read mask image ({e})") from e
    return torch.from_numpy(arr > 0)


def as_selection_list(selections) -> list[torch.Tensor]:
    """One boolean (N,) selection or a list of them, checked non-empty."""
    sels = [selections] if isinstance(selections, torch.Tensor) else list(selections)
    for s in sels:
        if s.dtype != torch.bool or not bool(s.any()):
            raise InputError("each selection must be a non-empty boolean mask over the Gaussians")
    return sels


def per_selection(values, count: int, width: int = 3) -> torch.Tensor:
    """(count, width): one value for every selection, or one per selection."""
    t = torch.as_tensor(values, dtype=torch.float32)
    if t.numel() == width:
        return t.reshape(1, width).expand(count, width)
    if t.numel() != count * width:
        raise InputError(f"expected {width} values or {width} per selection ({count * width}), got {t.numel()}")
    return t.reshape(count, width)


BACKGROUND_SHARE = 0.35
"""A selection holding more than this share of the scene's Gaussians is probably the ground or
the background, not an object (a hint, never an error)."""
BACKGROUND_WIDTH = 0.6
"""... as is one whose widest side spans more than this fraction of the scene's widest side."""


@dataclass(frozen=True)
class SelectionExtent:
    """How big a selection is, so a user can tell an object from the ground they clicked by
    mistake. Sizes are the 2-98th percentile spans of the Gaussian centres (robust to strays);
    the scene's, the 0.5-99.5th."""

    count: int
    total: int
    size: tuple[float, float, float]
    centre: tuple[float, float, float]
    scene_size: tuple[float, float, float]

    @property
    def share(self) -> float:
        return self.count / max(1, self.total)

    @property
    def looks_like_background(self) -> bool:
        return self.share > BACKGROUND_SHARE or max(self.size) > BACKGROUND_WIDTH * max(self.scene_size)

    def describe(self) -> str:
        dims = " x ".join(f"{v:.2f}" for v in self.size)
        scene = " x ".join(f"{v:.2f}" for v in self.scene_size)
        at = ", ".join(f"{v:.2f}" for v in self.centre)
        return (f"{self.count:,} of {self.total:,} Gaussians ({100 * self.share:.1f} % of the scene), "
                f"{dims} across (scene {scene}), centred at ({at})")

    def hint(self) -> str | None:
        """A warning when the selection looks like the ground or background, else None."""
        if not self.looks_like_background:
            return None
        return (f"this selection holds {100 * self.share:.0f} % of the scene and spans "
                f"{100 * max(self.size) / max(max(self.scene_size), 1e-12):.0f} % of its width: probably the ground or "
                f"background, not an object. To select an object, give a pixel well inside it.")


def _span(x: torch.Tensor, tail: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Span and middle of the ``tail``..``1 - tail`` quantiles of each coordinate (on at most
    100k rows, a fixed sample)."""
    q = torch.quantile(x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:100_000]].double(),
                       torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=0)
    return q[1] - q[0], (q[1] + q[0]) / 2


def selection_extent(centres: torch.Tensor, selection: torch.Tensor) -> SelectionExtent:
    """The extent of ``selection`` ((N,) bool) among Gaussian ``centres`` (N, 3)."""
    centres = centres.detach().cpu()
    selection = selection.cpu()
    if not bool(selection.any()):
        raise EmptySelectionError("the selection is empty")
    size, centre = _span(centres[selection], 0.02)
    scene, _ = _span(centres, 0.005)
    as3 = lambda t: tuple(float(v) for v in t)  # noqa: E731
    return SelectionExtent(int(selection.sum()), int(selection.numel()), as3(size), as3(centre), as3(scene))
