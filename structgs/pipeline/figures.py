"""Pictures of what structgs did: renders with selections tinted over them, laid out in
labelled grids.

* ``edit_overview`` (the demo's ``edits.png``): a grid of views (rows) by columns: the input
  render, the selections tinted (one colour per object), then one column per edit (remove,
  recolour, move), each on the object the plan names. Each edit is undone before the next, so
  the model is left as found.
* ``grid_png``: any rows x columns of images with a title per column (``structgs eval``'s
  one-page report uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from structgs.pipeline.render_views import render_selection_mask
from structgs.utils.io import atomic_write

PALETTE = ((1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (0.3, 1.0, 0.1), (1.0, 0.55, 0.0), (0.5, 0.35, 1.0), (1.0, 1.0, 1.0))
"""Colours the selections are tinted with, one per object (in object order)."""
HEADER = 18
"""Height in pixels of a grid's title strip."""
GAP = 4
"""Pixels between the tiles of a grid."""


@dataclass(frozen=True)
class EditPlan:
    """Which object each edit of the overview is applied to, and how."""

    remove: int
    recolor: int
    move: int
    rgb: tuple[float, float, float]
    step: tuple[float, float, float]
    moves: int = 3


def render_image(model, cam, bg) -> torch.Tensor:
    """(H, W, 3) render in [0, 1] on the CPU."""
    with torch.no_grad():
        return model.render(cam, background=bg).image.clamp(0, 1).cpu()


def tinted(model, cam, bg, selections: list[torch.Tensor]) -> torch.Tensor:
    """The render with each selection's visible pixels blended 60 % towards its own colour."""
    image = render_image(model, cam, bg)
    with torch.no_grad():
        s = model.decode(cam)
        for i, sel in enumerate(selections):
            mask = render_selection_mask(s.means, s.quats, s.scales, s.opacities, sel.to(model.device), cam).cpu()
            tint = torch.tensor(PALETTE[i % len(PALETTE)])
            image = torch.where(mask[..., None], 0.4 * image + 0.6 * tint, image)
    return image


def highlighted(model, cam, bg, selection: torch.Tensor) -> torch.Tensor:
    """The render with the selection's visible pixels tinted magenta and the rest faded towards
    white, so a selection shows whatever its colour."""
    image = render_image(model, cam, bg)
    with torch.no_grad():
        s = model.decode(cam)
        mask = render_selection_mask(s.means, s.quats, s.scales, s.opacities, selection.to(model.device), cam).cpu()
    return torch.where(mask[..., None], 0.5 * image + 0.5 * torch.tensor([1.0, 0.0, 1.0]), 0.4 * image + 0.6)


def grid_png(columns: list[tuple[str, list[torch.Tensor]]], path: Path, row_titles: list[str] | None = None) -> Path:
    """Write a grid: one (title, tiles) per column, tiles (H, W, 3) in [0, 1], all the same size;
    ``row_titles`` are written on each row's first tile. Atomic."""
    from PIL import Image, ImageDraw

    h, w = columns[0][1][0].shape[:2]
    rows = len(columns[0][1])
    grid = Image.new("RGB", (len(columns) * (w + GAP) - GAP, HEADER + rows * (h + GAP) - GAP), "white")
    draw = ImageDraw.Draw(grid)
    for j, (title, tiles) in enumerate(columns):
        x = j * (w + GAP)
        draw.text((x + 2, 3), title, fill=(0, 0, 0))
        for i, tile in enumerate(tiles):
            grid.paste(Image.fromarray((tile.numpy() * 255 + 0.5).astype(np.uint8)), (x, HEADER + i * (h + GAP)))
    for i, title in enumerate(row_titles or []):
        y = HEADER + i * (h + GAP)
        draw.rectangle((0, y, 6 * len(title) + 4, y + 12), fill=(255, 255, 255))
        draw.text((2, y), title, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))


def edit_overview(editor, cameras, background: torch.Tensor, selections: dict[int, torch.Tensor],
                  names: dict[int, str], plan: EditPlan, path: Path, upscale: float = 2.0) -> Path:
    """Write the grid (see the module docstring) for ``cameras`` rendered ``upscale`` x larger."""
    model = editor.model
    cams = [c.scaled(1.0 / upscale) for c in cameras]
    columns: list[tuple[str, list[torch.Tensor]]] = [
        ("input", [render_image(model, c, background) for c in cams]),
        ("one click per object", [tinted(model, c, background, [selections[k] for k in sorted(selections)])
                                  for c in cams])]
    editor.remove(selections[plan.remove])
    columns.append((f"removed: {names[plan.remove]}", [render_image(model, c, background) for c in cams]))
    editor.undo()
    editor.recolor(selections[plan.recolor], list(plan.rgb))
    columns.append((f"recoloured: {names[plan.recolor]}", [render_image(model, c, background) for c in cams]))
    editor.undo()
    for _ in range(plan.moves):
        editor.move(selections[plan.move], list(plan.step))
    total = ", ".join(f"{plan.moves * v:g}" for v in plan.step)
    columns.append((f"moved: {names[plan.move]} ({total})", [render_image(model, c, background) for c in cams]))
    for _ in range(plan.moves):
        editor.undo()
    return grid_png(columns, path)
