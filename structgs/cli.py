"""The ``structgs`` command line (typer). Every command is a thin wrapper over the library."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from structgs.utils.log import get_logger, setup_cli_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Structure-aware 3D Gaussian Splatting: fit, shape, segment and edit 3DGS scenes.")
log = get_logger("cli")


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


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    setup_cli_logging(verbose)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory (scene, renders, summary).")] = Path("outputs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the built-in scene.")] = 0,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Run the main job on the built-in scene: generate it, render it, write images."""
    from structgs.pipeline.demo import run_demo

    run_demo(out, seed=seed, device=device.value)


@app.command()
def render(
    run: Annotated[Optional[Path], typer.Argument(help="A fitted run directory (from `structgs fit`).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset directory (Blender or COLMAP).")] = None,
    ply: Annotated[Optional[Path], typer.Option(help="A plain 3DGS PLY to render with the dataset's cameras.")] = None,
    split: Annotated[Split, typer.Option(help="Which cameras.")] = Split.test,
    out: Annotated[Path, typer.Option(help="Output directory: OUT/<view name>.png.")] = Path("renders"),
    selection: Annotated[Optional[Path], typer.Option(help="Boolean .npy over Gaussians: render a binary mask.")] = None,
    background: Annotated[tuple[float, float, float], typer.Option(help="Background RGB in [0,1].")] = (1.0, 1.0, 1.0),
    downscale: Annotated[float, typer.Option(help="Image downscale factor.")] = 1.0,
    backend: Annotated[BackendChoice, typer.Option(help="Rasterizer backend.")] = BackendChoice.auto,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Render a plain 3DGS PLY (--data --ply) or a fitted RUN to OUT/<view name>.png."""
    from structgs.pipeline.render_views import render_ply_views, render_run_views

    if run is not None:
        if ply is not None:
            raise typer.BadParameter("give either RUN or --ply, not both")
        render_run_views(run, split.value, out, data=data, selection=selection, background=background,
                         downscale=downscale, backend=backend.value, device=device.value)
        return
    if data is None or ply is None:
        raise typer.BadParameter("without RUN, both --data and --ply are needed")
    render_ply_views(data, ply, split.value, out, selection=selection, background=background, downscale=downscale,
                     backend=backend.value, device=device.value)


def main() -> None:
    try:
        app()
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        # input problems: one clear line, no traceback
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
