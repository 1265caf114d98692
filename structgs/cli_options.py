"""The command line's option types: choices (enums), the selection options shared by segment,
edit, compare and masks, and turning them into a ``SelectionSpec``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Split(str, Enum):
    train = "train"
    test = "test"
    val = "val"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class BackendChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    gsplat = "gsplat"


class DecoderBackend(str, Enum):
    torch = "torch"
    tcnn = "tcnn"


class Branch(str, Enum):
    color = "color"
    opacity = "opacity"
    scale = "scale"
    rotation = "rotation"
    motion = "motion"


class Sampling(str, Enum):
    uniform = "uniform"
    fps = "fps"


class Association(str, Enum):
    tracked = "tracked"
    overlap = "overlap"
    none = "none"


class Objective(str, Enum):
    activation = "activation"
    jacobian = "jacobian"


class Method(str, Enum):
    shaped = "shaped"
    voting = "voting"
    projection = "projection"
    binary = "binary"


class Op(str, Enum):
    remove = "remove"
    recolor = "recolor"
    move = "move"


class TrackerChoice(str, Enum):
    auto = "auto"
    sam2 = "sam2"
    gaussians = "gaussians"


class MaskSplit(str, Enum):
    train = "train"
    test = "test"
    all = "all"


SelGaussians = Annotated[Optional[Path], typer.Option("--gaussians", help="Selection: .npy of ids or a boolean mask.")]
SelView = Annotated[Optional[str], typer.Option("--view", help="View name for --pixel / --mask.")]
PixelView = Annotated[Optional[str], typer.Option("--view", help="View name for --pixel.")]
SelPixel = Annotated[Optional[list[str]], typer.Option("--pixel", metavar="X Y",
                                                      help="Pixel X Y of --view (repeatable).")]
SelMask = Annotated[Optional[Path], typer.Option("--mask", help="2D mask PNG of --view (non-zero = selected).")]
SelText = Annotated[Optional[str], typer.Option("--text", help="Text prompt (Grounding DINO box -> SAM 2 mask); needs --weights and --detector-weights.")]
SelWeights = Annotated[Optional[Path], typer.Option("--weights", help="SAM 2 checkpoint dir: --pixel/--text become a SAM 2 mask of the view.")]
SelDetector = Annotated[Optional[Path], typer.Option("--detector-weights", help="Grounding DINO checkpoint dir (for --text).")]


def selection_spec(gaussians, view, pixel, mask, text=None, weights=None, detector_weights=None, device="auto"):
    from structgs.pipeline.edit_ops import SelectionSpec
    from structgs.pipeline.make_masks import MaskSources

    if gaussians is None and not pixel and mask is None and text is None:
        return None
    sources = None
    if weights is not None or detector_weights is not None:
        sources = MaskSources(weights=weights, detector_weights=detector_weights, device=device)
    return SelectionSpec(gaussians=gaussians, view=view, pixels=[parse_pixel(p) for p in pixel] if pixel else None,
                         mask=mask, text=text, sources=sources)


def parse_pixel(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--pixel expects two integers X Y, got {text!r}") from None
    return x, y


def fold_pixel_args(argv: list[str]) -> list[str]:
    """``--pixel X Y`` -> ``--pixel X,Y`` (typer has no repeatable two-value options)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--pixel":
            vals = argv[i + 1:i + 3]
            if len(vals) == 2 and all(v.lstrip("-").isdigit() for v in vals):
                out += ["--pixel", ",".join(vals)]
                i += 3
                continue
        out.append(argv[i])
        i += 1
    return out


def hint(extent) -> None:
    """Say so when a selection looks like the ground or background rather than an object."""
    if extent.hint() is not None:
        typer.secho(f"note: {extent.hint()}", fg=typer.colors.YELLOW, err=True)
