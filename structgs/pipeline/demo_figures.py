"""The demo's pictures: several views, each object's one-click selection over the render, and
each edit next to the input, labelled with the object's name.

``edit_overview`` writes one PNG, a grid of views (rows) by columns: the input render, the
selections tinted (one colour per object), then one column per edit (remove, recolour, move), each on
the object the plan names. Each edit is undone before the next, so the model is left as found.
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


@dataclass(frozen=True)
class EditPlan:
    """Which object each edit of the overview is applied to, and how."""

    remove: int
    recolor: int
    move: int
    rgb: tuple[float, float, float]
    step: tuple[float, float, float]
    moves: int = 3


def _render(model, cam, bg) -> torch.Tensor:
    with torch.no_grad():
        return model.render(cam, background=bg).image.clamp(0, 1).cpu()


def _tinted(model, cam, bg, selections: list[torch.Tensor]) -> torch.Tensor:
    """The render with each selection's visible pixels blended 60 % towards its own colour."""
    image = _render(model, cam, bg)
    with torch.no_grad():
        s = model.decode(cam)
        for i, sel in enumerate(selections):
            mask = render_selection_mask(s.means, s.quats, s.scales, s.opacities, sel.to(model.device), cam).cpu()
            tint = torch.tensor(PALETTE[i % len(PALETTE)])
            image = torch.where(mask[..., None], 0.4 * image + 0.6 * tint, image)
    return image


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.numpy() * 255 + 0.5).astype(np.uint8)


def edit_overview(editor, cameras, background: torch.Tensor, selections: dict[int, torch.Tensor],
                  names: dict[int, str], plan: EditPlan, path: Path, upscale: float = 2.0) -> Path:
    """Write the grid (see the module docstring) for ``cameras`` rendered ``upscale`` x larger."""
    from PIL import Image, ImageDraw

    model = editor.model
    cams = [c.scaled(1.0 / upscale) for c in cameras]
    columns: list[tuple[str, list[torch.Tensor]]] = [
        ("input", [_render(model, c, background) for c in cams]),
        ("one click per object", [_tinted(model, c, background, [selections[k] for k in sorted(selections)])
                                  for c in cams])]
    editor.remove(selections[plan.remove])
    columns.append((f"removed: {names[plan.remove]}", [_render(model, c, background) for c in cams]))
    editor.undo()
    editor.recolor(selections[plan.recolor], list(plan.rgb))
    columns.append((f"recoloured: {names[plan.recolor]}", [_render(model, c, background) for c in cams]))
    editor.undo()
    for _ in range(plan.moves):
        editor.move(selections[plan.move], list(plan.step))
    total = ", ".join(f"{plan.moves * v:g}" for v in plan.step)
    columns.append((f"moved: {names[plan.move]} ({total})", [_render(model, c, background) for c in cams]))
    for _ in range(plan.moves):
        editor.undo()
    h, w = cams[0].height, cams[0].width
    header, gap = 18, 4
    grid = Image.new("RGB", (len(columns) * (w + gap) - gap, header + len(cams) * (h + gap) - gap), "white")
    draw = ImageDraw.Draw(grid)
    for j, (title, tiles) in enumerate(columns):
        x = j * (w + gap)
        draw.text((x + 2, 3), title, fill=(0, 0, 0))
        for i, tile in enumerate(tiles):
            grid.paste(Image.fromarray(_to_uint8(tile)), (x, header + i * (h + gap)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
