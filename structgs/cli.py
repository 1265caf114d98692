"""The ``structgs`` command line (typer). Every command is a thin wrapper over the library."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from structgs.cli_options import (Association, BackendChoice, Branch, DecoderBackend, DeviceChoice, MaskSplit,
                                  Method, Objective, Op, PixelView, Sampling, SelDetector, SelGaussians, SelMask,
                                  SelPixel, SelText, SelView, SelWeights, Split, TrackerChoice, fold_pixel_args, hint,
                                  parse_pixel, selection_spec)
from structgs.utils.errors import StructGSError
from structgs.utils.log import get_logger, setup_cli_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Structure-aware 3D Gaussian Splatting: fit, shape, segment and edit 3DGS scenes.")
log = get_logger("cli")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: the cores this process may run "
                                                        "on, from its affinity mask; OMP_NUM_THREADS if set).")] = None,
) -> None:
    from structgs.utils.memory import keep_freed_memory
    from structgs.utils.threads import configure_threads

    setup_cli_logging(verbose)
    threads_in_use = configure_threads(threads)
    kept = keep_freed_memory()
    log.debug("using %d CPU threads; freed memory kept for reuse: %s", threads_in_use, kept)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory (scene, renders, summary).")] = Path("outputs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the built-in scene.")] = 0,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """The whole job on the built-in scene (about 12 min on 2 cores): fit, shape, segment, evaluate, edit.

    Generates the scene, fits the decoder (~4 min), shapes it from its SAM-like masks (~4 min),
    segments every object from one click with voting beside it (structgs eval, ~2 min), edits
    each (remove, recolour, move, undo), and writes edits.png and summary.md. Finished stages
    are reused."""
    from structgs.pipeline.demo import run_demo

    summary = run_demo(out, seed=seed, device=device.value)
    typer.echo("\nfiles:")
    for what, path in summary["files"].items():
        typer.echo(f"  {what:<11} {path}")
    typer.echo(f"edit it in the browser: structgs view {out / 'shaped'} --masks {out / 'scene' / 'masks'}")


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
    background: Annotated[tuple[float, float, float], typer.Option(metavar="R G B", help="Background RGB.")] = (1.0, 1.0, 1.0),
    backend: Annotated[BackendChoice, typer.Option(help="Rasterizer backend.")] = BackendChoice.auto,
    compile_rasterizer: Annotated[bool, typer.Option(help="Stage 2, torch backend: compile the rasterizer's kernels "
                                                          "(up to ~1.25x faster at 20k Gaussians, none at 100k; 8-30 s of compiling).")] = False,
    decoder_backend: Annotated[Optional[DecoderBackend], typer.Option(help="Decoder MLPs: torch (reference) or tcnn (tinycudann, CUDA).")] = None,
    hidden_width: Annotated[Optional[int], typer.Option(help="Decoder hidden width (default 128; tcnn: 16/32/64/128).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Fit the decoder to a scene: stage 1 on the PLY's attributes, stage 2 on the images."""
    _fit(**locals())


def _fit(data, out, ply, init, stage1_iters, stage2_iters, init_points, checkpoint_every, resume, seed, downscale,
         background, backend, compile_rasterizer, decoder_backend, hidden_width, device) -> dict:
    """``fit``'s options -> FitConfig -> ``pipeline.fit.fit_run`` (shared by ``fit`` and ``train``)."""
    from dataclasses import replace

    from structgs.decoder import DecoderConfig
    from structgs.training.config import FitConfig
    from structgs.pipeline.fit import fit_run

    dec = DecoderConfig()
    if decoder_backend is not None:
        dec = replace(dec, backend=decoder_backend.value)
    if hidden_width is not None:
        dec = replace(dec, hidden_width=hidden_width)
    cfg = FitConfig(stage1_iters=stage1_iters, stage2_iters=stage2_iters, init_points=init_points,
                    checkpoint_every=checkpoint_every, seed=seed, downscale=downscale, background=background,
                    backend=backend.value, compile_rasterizer=compile_rasterizer, decoder=dec)
    report = fit_run(data, out, ply=ply, init=init, config=cfg, resume=resume, device=device.value)
    typer.echo(f"fitted {out}: test PSNR {report['psnr_fitted']:.2f} dB"
               + (f" (input PLY {report['psnr_input_ply']:.2f} dB)" if "psnr_input_ply" in report else ""))
    return report


def _train_options(
    masks: Annotated[Optional[Path], typer.Option(help="Id masks of the training views: shape the fitted run with "
                                                       "them (default association tracked).")] = None,
    shaped_out: Annotated[Optional[Path], typer.Option(help="The shaped run (default: OUT-shaped).")] = None,
    association: Annotated[Association, typer.Option(help="How mask ids relate across views.")] = Association.tracked,
    shape_iters: Annotated[int, typer.Option(help="Shaping steps.")] = 300,
) -> None:
    """train's own options (the rest are fit's)."""


def train(**options) -> None:
    """Fit, then (with --masks) shape: the whole per-scene job in one command (also ``python train.py``).
    Takes every option of ``structgs fit``; ``--resume`` continues whichever step was stopped."""
    from structgs.pipeline.runs import has_checkpoint
    from structgs.pipeline.shape import shape_run
    from structgs.shaping.config import ShapeConfig

    own = {name: options.pop(name) for name in inspect.signature(_train_options).parameters}
    _fit(**options)
    if own["masks"] is None:
        return
    out = Path(options["out"])
    target = own["shaped_out"] or out.with_name(out.name + "-shaped")
    report = shape_run(out, own["masks"], target,
                       ShapeConfig(association=own["association"].value, iters=own["shape_iters"]),
                       device=options["device"].value,
                       resume=options["resume"] and has_checkpoint(target, "shape"))  # a kill may have come before it
    typer.echo(f"shaped {target}: test PSNR {report['psnr_before']:.2f} -> {report['psnr_after']:.2f} dB, "
               f"touched {report['fraction_touched']:.1%}")


def _with_options_of(func, *sources) -> None:
    """Give ``func`` (taking ``**options``) the typer options of ``sources``, in order."""
    params = [p for src in sources for p in inspect.signature(src, eval_str=True).parameters.values()]
    func.__signature__ = inspect.Signature(params)
    func.__annotations__ = {k: v for src in sources for k, v in src.__annotations__.items() if k != "return"}


_with_options_of(train, fit, _train_options)
app.command()(train)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run directory (never modified).")],
    out: Annotated[Path, typer.Option(help="Output INRIA PLY (written atomically).")],
    selection: Annotated[Optional[Path], typer.Option(help="Only these Gaussians: .npy of ids or booleans "
                                                           "(from `structgs segment` or the viewer).")] = None,
    invert: Annotated[bool, typer.Option(help="Everything except --selection (the scene without the object).")] = False,
    sh_degree: Annotated[Optional[int], typer.Option(help="SH degree of the colours, 0-3 (default: the input "
                                                          "PLY's; view-dependent colours are fitted onto it).")] = None,
    keep_removed: Annotated[bool, typer.Option(help="Also write Gaussians that removals made transparent.")] = False,
    view: Annotated[Optional[str], typer.Option(help="Colours as this view sees them (SH degree 0).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset for --view (default: the one the run was fitted on).")] = None,
) -> None:
    """Write the decoded scene, or a selected object, as an INRIA PLY that other 3DGS tools open."""
    from structgs.pipeline.export import export_run

    info = export_run(run, out, selection=selection, invert=invert, view=view, data=data, sh_degree=sh_degree,
                      keep_removed=keep_removed)
    removed = f"; {info['removed_left_out']:,} removed ones left out" if info["removed_left_out"] else ""
    typer.echo(f"wrote {info['written']:,} of {info['of']:,} Gaussians (SH degree {info['sh_degree']}{removed}) -> {out}")


@app.command()
def view(
    run: Annotated[Path, typer.Argument(help="A shaped run (from `structgs shape`; never modified).")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the one the run was fitted on).")] = None,
    host: Annotated[str, typer.Option(help="Interface to serve on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the next free one if taken; 0: any free port).")] = 8080,
    masks: Annotated[Optional[Path], typer.Option(help="Id masks, ids consistent across views: enables compare.")] = None,
    exports: Annotated[Path, typer.Option(help="Folder for exported PLYs and selections.")] = Path("structgs-exports"),
    start_view: Annotated[Optional[str], typer.Option("--view", help="Dataset view to start at.")] = None,
) -> None:
    """Edit in the browser: click an object to segment it, then remove, recolor, move, undo, export."""
    from structgs.viewer.app import ViewerConfig, open_viewer

    viewer = open_viewer(run, data, ViewerConfig(host=host, port=port, exports=exports, masks=masks, view=start_view))
    typer.echo(f"structgs view: open {viewer.url} in a browser (Ctrl-C stops)")
    viewer.serve_forever()


@app.command()
def shape(
    run: Annotated[Path, typer.Argument(help="A fitted run (never modified).")],
    masks: Annotated[Path, typer.Option(help="Id masks: <masks>/<view name>.png for the training views.")],
    out: Annotated[Path, typer.Option(help="The shaped run to write.")],
    association: Annotated[Association, typer.Option(help="How mask ids relate across views.")] = Association.tracked,
    objective: Annotated[Objective, typer.Option(help="activation (ours) or jacobian (JacobiGS baseline).")] = Objective.activation,
    iters: Annotated[int, typer.Option(help="Shaping steps.")] = 300,
    lambda_mi: Annotated[float, typer.Option(help="Weight of the InfoNCE term.")] = 1.0,
    lambda_reg: Annotated[float, typer.Option(help="Weight of the kNN smoothness term.")] = 1.0,
    tau: Annotated[Optional[float], typer.Option(help="InfoNCE temperature (default 0.1; 0.3 with --association none).")] = None,
    pixels: Annotated[int, typer.Option(help="--association none: pixels per step of Eq. 12's rendered-activation "
                                             "term (0: off, the default; it renders every Gaussian's activations).")] = 0,
    knn: Annotated[int, typer.Option(help="Neighbours of the smoothness term.")] = 16,
    branches: Annotated[Optional[list[Branch]], typer.Option(help="Branches to shape (repeat; default all).")] = None,
    touch_fraction: Annotated[float, typer.Option(help="Fraction of Gaussians the fine-tune may touch.")] = 0.15,
    sampling: Annotated[Sampling, typer.Option(help="Pool sampling: uniform, or fps (farthest points).")] = Sampling.uniform,
    side_width: Annotated[int, typer.Option(help="Width of the object side channel that is shaped (the scene cannot "
                                                  "change); 0 fine-tunes the decoder itself (costs PSNR).")] = 64,
    fill_knn: Annotated[int, typer.Option(help="Unseen or low-confidence Gaussians take the majority label of this "
                                                "many nearest confidently labelled ones (0: leave them).")] = 16,
    band: Annotated[int, typer.Option(help="Mask pixels within this many pixels of an id change do not vote "
                                           "(boundary jitter).")] = 2,
    min_views: Annotated[int, typer.Option(help="tracked / overlap: a Gaussian labelled by fewer views is "
                                                "relabelled from its neighbours (objects the views rarely see "
                                                "are held to fewer).")] = 4,
    min_support: Annotated[float, typer.Option(help="--association none: drop a view's label of a Gaussian when the "
                                                    "other views put it with that view's mask-mates less often than "
                                                    "this (0: off; try 0 when masks merge touching objects in 20 % "
                                                    "of the views or more).")] = 0.5,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    gt_labels: Annotated[Optional[Path], typer.Option(help="Ground-truth labels .npy for the report.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed shaping run.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Shape a fitted decoder with 2D masks (InfoNCE on activations) into a new run."""
    from structgs.shaping.config import ShapeConfig
    from structgs.shaping.report import format_lifting, format_matrix
    from structgs.pipeline.shape import shape_run

    cfg = ShapeConfig(association=association.value, objective=objective.value, iters=iters, lambda_mi=lambda_mi,
                      lambda_reg=lambda_reg, tau=tau, knn=knn, branches=tuple(b.value for b in branches or ()),
                      touch_fraction=touch_fraction, sampling=sampling.value, side_width=side_width, fill_knn=fill_knn,
                      pixels=pixels, seed=seed, band=band, min_views=min_views,
                      min_support=min_support)
    report = shape_run(run, masks, out, cfg, data=data, gt_labels=gt_labels, resume=resume, device=device.value)
    typer.echo(f"shaped {out}: touched {report['fraction_touched']:.1%} of Gaussians, test PSNR "
               f"{report['psnr_before']:.2f} -> {report['psnr_after']:.2f} dB, {report['seconds']:.0f} s")
    if report["lifting"]:
        typer.echo(format_lifting(report["lifting"]))
    for b, entry in report.get("activation_cosine", {}).items():
        typer.echo(f"{b}: mean activation cosine, object x object\n{format_matrix(entry)}")


@app.command()
def segment(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path, typer.Option(help="Output .npy: one boolean per Gaussian, in stored order.")],
    gaussians: SelGaussians = None, view: SelView = None, pixel: SelPixel = None, mask: SelMask = None,
    text: SelText = None, weights: SelWeights = None, detector_weights: SelDetector = None,
    method: Annotated[Method, typer.Option(help="shaped (Jacobian cosine) or a voting method.")] = Method.shaped,
    masks: Annotated[Optional[Path], typer.Option(help="Id masks (voting methods).")] = None,
    target: Annotated[Optional[int], typer.Option(help="Target id in --masks (voting methods).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Shaped: cosine threshold (default 0.5).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Segment an object in 3D from Gaussian ids, pixels, a 2D mask or a text; write a boolean .npy."""
    from structgs.pipeline.edit_ops import segment_command

    spec = selection_spec(gaussians, view, pixel, mask, text, weights, detector_weights, device.value)
    extent = segment_command(run, out, spec, method.value, masks, target, threshold, data, device.value)
    typer.echo(f"selected {extent.describe()} -> {out}")
    hint(extent)


@app.command()
def edit(
    run: Annotated[Path, typer.Argument(help="A run directory (never modified).")],
    op: Annotated[Op, typer.Option(help="remove, recolor or move.")],
    out: Annotated[Path, typer.Option(help="The edited run to write (edit it again to chain edits).")],
    gaussians: SelGaussians = None, view: SelView = None, pixel: SelPixel = None, mask: SelMask = None,
    rgb: Annotated[Optional[tuple[float, float, float]], typer.Option(metavar="R G B",
                                                                      help="Target colour in [0,1] (recolor).")] = None,
    translate: Annotated[Optional[tuple[float, float, float]], typer.Option(metavar="DX DY DZ",
                                                                            help="Translation (move).")] = None,
    method: Annotated[Method, typer.Option(help="shaped (weight perturbation) or a voting method (direct).")] = Method.shaped,
    masks: Annotated[Optional[Path], typer.Option(help="Id masks (voting methods).")] = None,
    target: Annotated[Optional[int], typer.Option(help="Target id in --masks (voting methods).")] = None,
    expand: Annotated[Optional[bool], typer.Option("--expand/--no-expand", help="Shaped: expand the selection to its object first (default: yes for pixels/masks, no for --gaussians).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Remove, recolor or move the selected object; writes a new run."""
    from structgs.pipeline.edit_ops import edit_command

    rec = edit_command(run, out, op.value, selection_spec(gaussians, view, pixel, mask), method.value, masks, target, rgb,
                       translate, data, device.value, expand)
    typer.echo(f"{op.value}: {rec['extent'].describe()} -> {out}")
    hint(rec["extent"])


@app.command()
def prune(
    run: Annotated[Path, typer.Argument(help="A run directory (never modified).")],
    out: Annotated[Path, typer.Option(help="The pruned run to write.")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Lossless pruning: drop Gaussians that contribute to no pixel of any training view (what a
    removal left transparent, and what no view sees). Renders of every training view are unchanged."""
    from structgs.pipeline.edit_ops import prune_command

    info = prune_command(run, out, data, device.value)
    typer.echo(f"kept {info['kept']}, dropped {info['dropped']} -> {out}")
    if info["dropped"] == 0:
        typer.echo("nothing to prune: every Gaussian shows in some training view (prune after "
                   "`structgs edit --op remove` to drop what was removed)")


@app.command()
def compare(
    run: Annotated[Path, typer.Argument(help="A (shaped) run directory.")],
    masks: Annotated[Path, typer.Option(help="Id masks of the views (ground truth for the split).")],
    split: Annotated[Split, typer.Option(help="Views to evaluate on.")] = Split.test,
    target: Annotated[Optional[int], typer.Option(help="Target id in --masks.")] = None,
    view: PixelView = None, pixel: SelPixel = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """mIoU / boundary mIoU / query time of shaped, voting, projection and binary on one target."""
    from structgs.pipeline.edit_ops import compare_command, format_comparison

    spec = selection_spec(None, view, pixel, None)
    if target is None and spec is None:
        raise typer.BadParameter("give --target ID or --view NAME --pixel X Y")
    res = compare_command(run, masks, split.value, target, spec, data, device.value)
    typer.echo(format_comparison(res))
    if json_out is not None:
        from structgs.utils.io import write_json

        write_json(json_out, res)


@app.command("eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="A shaped run (never modified).")],
    masks: Annotated[Path, typer.Option(help="Ground-truth id masks (ids consistent across views) of the training "
                                             "and --split views.")],
    out: Annotated[Path, typer.Option(help="Report folder to create: report.json, report.md, report.png, selections/.")],
    split: Annotated[Split, typer.Option(help="Views the selections are scored on.")] = Split.test,
    prompts: Annotated[Optional[Path], typer.Option(help='JSON {"<id>": {"view": NAME, "pixel": [X, Y]}} (default: '
                                                         "the deepest pixel of each object in the first training view "
                                                         "that shows it well).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Object id per Gaussian (.npy) for 3D IoU (default: the "
                                                        "dataset's labels.npy if it has one).")] = None,
    vote_masks: Annotated[Optional[Path], typer.Option(help="Id masks voting votes on (default: --masks).")] = None,
    methods: Annotated[Optional[list[Method]], typer.Option("--method", help="Methods to compare (repeat; default "
                                                                             "shaped and voting).")] = None,
    edits: Annotated[bool, typer.Option("--edits/--no-edits", help="Measure shaped edit leakage per object.")] = True,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Score segmentation on every object: mIoU, boundary mIoU, 3D IoU, query time, edit leakage, PSNR."""
    from structgs.pipeline.evaluate import EvalConfig, evaluate_run, format_report

    cfg = EvalConfig(split=split.value, methods=tuple(m.value for m in methods) if methods else ("shaped", "voting"),
                     prompts=prompts, labels=labels, vote_masks=vote_masks, edits=edits)
    report = evaluate_run(run, masks, out, cfg, data=data, device=device.value)
    typer.echo(format_report(report))
    typer.echo(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}")


class AffordanceMode(str, Enum):
    voting = "voting"
    lifted = "lifted"


@app.command()
def affordance(
    run: Annotated[Path, typer.Argument(help="A fitted (or shaped) run (never modified).")],
    examples: Annotated[Path, typer.Option(help="Folder with examples.json: label names and [image, id PNG] pairs.")],
    out: Annotated[Path, typer.Option(help="Labels to write: .npy, one label per Gaussian (0 = none), and a .json.")],
    weights: Annotated[Optional[Path], typer.Option(help="DINOv2 checkpoint dir (transformers format, e.g. "
                                                         "facebook/dinov2-small).")] = None,
    mode: Annotated[AffordanceMode, typer.Option(help="voting: patch labels voted over the views; lifted: features "
                                                      "lifted onto the Gaussians, then kNN.")] = AffordanceMode.voting,
    k: Annotated[int, typer.Option(help="Nearest example patches that vote for a label.")] = 5,
    masks_out: Annotated[Optional[Path], typer.Option(help="Also write the 3D labels as id masks of the training "
                                                           "views (for `structgs shape --masks`).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Label every Gaussian with an affordance annotated on a few example images (DINOv2 kNN + voting)."""
    from structgs.pipeline.affordance import affordance_run

    res = affordance_run(run, examples, out, weights, mode=mode.value, k=k, masks_out=masks_out, data=data,
                         device=device.value)
    typer.echo(f"{mode.value}: " + ", ".join(f"{name} {count:,}" for name, count in res["counts"].items()) + f" -> {out}")


@app.command()
def features(
    run: Annotated[Path, typer.Argument(help="A fitted (or shaped) run (never modified).")],
    out: Annotated[Path, typer.Option(help="Features to write: .npy, (N, C) float16.")],
    weights: Annotated[Path, typer.Option(help="DINOv2 checkpoint dir (transformers format).")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset (default: the run's).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Lift DINOv2 features of the rendered training views onto the Gaussians (blend-weighted means)."""
    from structgs.pipeline.affordance import features_run

    feats = features_run(run, out, weights, data=data, device=device.value)
    typer.echo(f"lifted {feats.shape[1]}-d features of {feats.shape[0]:,} Gaussians -> {out}")


@app.command()
def masks(
    data: Annotated[Path, typer.Argument(help="Dataset directory (Blender or COLMAP).")],
    out: Annotated[Path, typer.Option(help="Masks directory to write: OUT/<view name>.png + OUT/masks.json.")],
    weights: Annotated[Optional[Path], typer.Option(help="SAM 2 checkpoint dir (transformers format, e.g. facebook/sam2.1-hiera-large).")] = None,
    detector_weights: Annotated[Optional[Path], typer.Option(help="Grounding DINO checkpoint dir (for --text).")] = None,
    oracle_masks: Annotated[Optional[Path], typer.Option(help="Instead of SAM 2: existing id masks (ids may differ per view).")] = None,
    scene_json: Annotated[Optional[Path], typer.Option(help="With --oracle-masks: object names for --text (built-in scene).")] = None,
    ply: Annotated[Optional[Path], typer.Option(help="Pre-trained 3DGS: enables the Gaussian tracker.")] = None,
    tracker: Annotated[TrackerChoice, typer.Option(help="sam2 (video memory), gaussians (3D, needs --ply), auto.")] = TrackerChoice.auto,
    split: Annotated[MaskSplit, typer.Option(help="Views to mask.")] = MaskSplit.train,
    view: PixelView = None, pixel: SelPixel = None,
    text: Annotated[Optional[str], typer.Option(help="Mask one object named by text (Grounding DINO -> SAM 2).")] = None,
    refine: Annotated[bool, typer.Option("--refine/--no-refine", help="Prompted: re-prompt SAM 2 inside each propagated mask (SA3D).")] = True,
    points_per_side: Annotated[int, typer.Option(help="Automatic: prompt grid size.")] = 16,
    ids: Annotated[str, typer.Option(help="Automatic masks: how ids are made consistent across views: consensus "
                                          "(through --ply's Gaussians; robust to merged/split masks), chain "
                                          "(the tracker along the views), auto (consensus with --ply).")] = "auto",
    device: Annotated[DeviceChoice, typer.Option(help="Where to compute.")] = DeviceChoice.auto,
) -> None:
    """Turn the views' images into id masks with one id per object across views (or one prompted object)."""
    from structgs.masks.automatic import AutoMaskConfig
    from structgs.pipeline.make_masks import MaskSources, make_masks

    sources = MaskSources(weights=weights, detector_weights=detector_weights, oracle_masks=oracle_masks,
                          scene_json=scene_json, ply=ply, tracker=tracker.value, device=device.value)
    summary = make_masks(data, out, sources, split=split.value, view=view,
                         pixels=[parse_pixel(p) for p in pixel] if pixel else None, text=text, refine=refine,
                         auto=AutoMaskConfig(points_per_side=points_per_side), ids=ids)
    objs = summary["objects"]
    typer.echo(f"{len(summary['order'])} views, {len(objs)} objects -> {out}")
    for oid, info in objs.items():
        typer.echo(f"  id {oid}: first seen on {info['first_view']}, in {info['views']} views")


def main(argv: list[str] | None = None) -> None:
    import sys

    from structgs.utils.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch is imported: OpenMP threads sleep instead of spinning
    try:
        app(args=fold_pixel_args(sys.argv[1:] if argv is None else list(argv)))
    except StructGSError as e:
        # problems with the user's input, files or environment: one clear line, no traceback
        # (any other exception is a bug and keeps its traceback)
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
