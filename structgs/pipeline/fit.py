"""``structgs fit``'s job: check the output, load the dataset and the starting Gaussians (a
pre-trained PLY or a point cloud), fit (structgs.training.fit.Fitter) with checkpoints, and
commit the run (report first, ``config.json`` last)."""

from __future__ import annotations

from pathlib import Path

import torch

from structgs.model import SceneInfo
from structgs.model.scene_info import normals_kind
from structgs.pipeline.runs import commit_run, prepare_run_output
from structgs.scene.dataset import SceneDataset, load_dataset, load_init_points
from structgs.scene.gaussians import Gaussians
from structgs.scene.ply import read_ply
from structgs.training.config import FitConfig
from structgs.training.fit import Fitter, gaussians_from_points, random_box_points
from structgs.utils.device import resolve_device
from structgs.utils.errors import InputError
from structgs.utils.io import write_json
from structgs.utils.log import get_logger

log = get_logger("fit")


def starting_gaussians(ds: SceneDataset, ply: Path | None, init: str | Path | None, count: int,
                       generator: torch.Generator) -> Gaussians:
    """The Gaussians stage 1 regresses: the PLY's, or heuristic ones on ``init`` points
    (``random``: ``count`` points drawn in a box around the scene centre)."""
    if ply is not None:
        return read_ply(ply)
    if str(init) == "random":
        centre, _ = ds.scene_extent()
        half = 0.4 * ds.mean_camera_distance()
        pts = random_box_points(count, centre - half, centre + half, generator)
        log.info("initialising from %d random points in the box %s +- %.2f", len(pts), centre.tolist(), half)
        return gaussians_from_points(pts, None)
    pts, rgb = load_init_points(init)
    if len(pts) < 4:
        raise InputError(f"{init}: needs at least 4 points, got {len(pts)}")
    return gaussians_from_points(pts, rgb)


def fit_run(data: str | Path, out: str | Path, ply: str | Path | None = None, init: str | Path | None = None,
            config: FitConfig | None = None, resume: bool = False, device: str = "auto",
            progress: bool = True) -> dict:
    """Fit a scene model to the dataset ``data`` from ``ply`` (a pre-trained 3DGS) or ``init``
    (points.ply, a COLMAP sparse dir, or ``random``) and write the run to ``out``."""
    if (ply is None) == (init is None):
        raise InputError("give exactly one of --ply (a pre-trained 3DGS) or --init (points.ply, a COLMAP "
                         "sparse dir, or 'random')")
    cfg = config or FitConfig()
    data, out = Path(data), Path(out)
    ply = Path(ply) if ply is not None else None
    checkpointer = prepare_run_output(out, "fit", resume, {"input PLY": ply, "dataset directory": data})
    dev = resolve_device(device)
    ds = load_dataset(data, background=cfg.background, downscale=cfg.downscale)
    generator = torch.Generator().manual_seed(cfg.seed)
    targets = starting_gaussians(ds, ply, init, cfg.init_points, generator)
    fitter = Fitter(ds, targets, cfg, from_points=init is not None, generator=generator, checkpointer=checkpointer,
                    device=dev, progress=progress)
    if resume:
        fitter.restore()
    else:
        scene = SceneInfo(data=str(data.resolve()), background=cfg.background, downscale=cfg.downscale,
                          scene_extent=ds.scene_extent()[1], mean_camera_distance=ds.mean_camera_distance(),
                          source_ply=str(ply.resolve()) if ply else None, init=None if init is None else str(init),
                          sh_degree=targets.sh_degree if ply else 0,
                          normals=normals_kind(targets.normals) if ply else "none")
        fitter.initialise(scene, {"fit": cfg.to_dict()})
    model = fitter.train()
    report = fitter.evaluate("test", reference=targets if ply is not None else None)
    log.info("fit: %s PSNR fitted %.2f dB%s", report["split"], report["psnr_fitted"],
             f", input PLY {report['psnr_input_ply']:.2f} dB" if "psnr_input_ply" in report else "")
    commit_run(out, model, {"fit_report.json": lambda p: write_json(p, report)})
    return report
