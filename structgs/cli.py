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
    background: Annotated[Optional[tuple[float, float, float]], typer.Option(help="Background RGB in [0,1] (default white, or the run's).")] = None,
    downscale: Annotated[Optional[float], typer.Option(help="Image downscale factor (default 1, or the run's).")] = None,
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
    render_ply_views(data, ply, split.value, out, selection=selection, background=background or (1.0, 1.0, 1.0),
                     downscale=downscale or 1.0, backend=backend.value, device=device.value)


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Dataset directory (Blender or COLMAP layout).")],
    out: Annotated[Path, typer.Option(help="Run directory to create.")],
    ply: Annotated[Optional[Path], typer.Option(help="Pre-trained 3DGS (INRIA PLY); never modified.")] = None,
    init: Annotated[Optional[str], typer.Option(help="Instead of --ply: points.ply, a COLMAP sparse dir, or 'random'.")] = None,
    stage1_iters: Annotated[int, typer.Option(help="Attribute-regression steps.")] = 2000,
    stage2_iters: Annotated[int, typer.Option(help="Photometric steps.")] = 300,
    init_points: Annotated[int, typer.Option(help="Points for --init random.")] = 20000,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 200,
    resume: Annotated[bool, typer.Option(help="Continue a killed fit from its last checkpoint.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same result on CPU).")] = 0,
    downscale: Annotated[float, typer.Option(help="Image downscale factor.")] = 1.0,
    background: Annotated[tuple[float, float, float], typer.Option(help="Background RGB.")] = (1.0, 1.0, 1.0),
    backend: Annotated[BackendChoice, typer.Option(help="Rasterizer backend.")] = BackendChoice.auto,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Fit the decoder to a scene: stage 1 on the PLY's attributes, stage 2 on the images."""
    from structgs.training.config import FitConfig
    from structgs.training.fit import Fitter

    cfg = FitConfig(stage1_iters=stage1_iters, stage2_iters=stage2_iters, init_points=init_points,
                    checkpoint_every=checkpoint_every, seed=seed, downscale=downscale, background=background,
                    backend=backend.value)
    report = Fitter(data, out, ply=ply, init=init, config=cfg, device=device.value).run(resume=resume)
    typer.echo(f"fitted {out}: test PSNR {report['psnr_fitted']:.2f} dB"
               + (f" (input PLY {report['psnr_input_ply']:.2f} dB)" if "psnr_input_ply" in report else ""))


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path, typer.Option(help="Output INRIA PLY.")],
    view: Annotated[Optional[str], typer.Option(help="Decode colours for this view (default: view-independent).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the one the run was fitted on).")] = None,
) -> None:
    """Export the decoded scene as an INRIA PLY that other 3DGS tools open."""
    from structgs.pipeline.render_views import export_run

    export_run(run, out, view=view, data=data)
    typer.echo(f"wrote {out}")


def main() -> None:
    try:
        app()
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        # input problems: one clear line, no traceback
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
