"""``structgs shape``'s job: open a fitted run, shape it with the masks (structgs.shaping.Shaper),
write the shaped run, its lifted labels and its report. The fitted run is never modified."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from structgs.edit.jacobian import activation_cache, default_segmentation_branch
from structgs.pipeline.runs import Run, commit_run, prepare_run_output
from structgs.scene.dataset import SceneDataset
from structgs.shaping.config import ShapeConfig
from structgs.shaping.report import activation_report, test_psnr
from structgs.shaping.shaper import Shaper
from structgs.utils.io import save_npy, write_json
from structgs.utils.errors import InputError, MissingFileError


def load_gt_labels(ds: SceneDataset, n: int, path: Path | None = None) -> torch.Tensor | None:
    """Ground-truth labels per Gaussian: ``path``, or ``<data>/labels.npy`` when its length matches."""
    p = Path(path) if path is not None else ds.root / "labels.npy"
    if not p.is_file():
        if path is not None:
            raise MissingFileError(f"{p}: ground-truth labels file does not exist")
        return None
    arr = np.load(p)
    if arr.shape != (n,):
        if path is not None:
            raise InputError(f"{p}: {arr.shape} labels for a run with {n} Gaussians")
        return None
    return torch.from_numpy(arr.astype(np.int64))


def shape_run(run: Path, masks: Path, out: Path, config: ShapeConfig | None = None, data: Path | None = None,
              gt_labels: Path | None = None, resume: bool = False, device: str = "auto", progress: bool = True) -> dict:
    """Load RUN, shape it with the masks, write the shaped run to OUT (RUN is never modified)."""
    cfg = config or ShapeConfig()
    run, out, masks = Path(run), Path(out), Path(masks)
    if out.resolve() == run.resolve():
        raise InputError(f"--out {out} is the input run; shaping writes a new run")
    if not masks.is_dir():
        raise MissingFileError(f"{masks}: masks directory does not exist")
    checkpointer = prepare_run_output(out, "shape", resume, {"masks directory": masks})
    fitted = Run.open(run, data, device)
    model, ds = fitted.model, fitted.dataset
    for cam in ds.split("train"):  # fail early, naming the file, if a mask is missing or the wrong size
        ds.mask(cam, masks)
    gt = load_gt_labels(ds, model.num_gaussians, gt_labels)
    t0 = time.perf_counter()
    psnr_before = test_psnr(model, ds)
    shaper = Shaper(model, ds, masks, cfg, checkpointer, progress)
    if resume:
        shaper.restore()
    else:
        shaper.prepare(gt)
    shaper.train()
    elapsed = time.perf_counter() - t0
    model.meta["shaping"] = cfg.to_dict()
    files = {}
    if shaper.labels is not None:
        files["lifted_labels.npy"] = lambda p: save_npy(p, shaper.labels.cpu().numpy())
    if shaper.confidence is not None:  # how sure the masks were of each Gaussian's object (0 where unlabelled)
        files["label_confidence.npy"] = lambda p: save_npy(p, shaper.confidence.cpu().numpy().astype(np.float32))
    report = {"config": cfg.to_dict(), "lifting": shaper.lift_info, "fraction_touched": shaper.touched_fraction,
              "psnr_before": psnr_before, "psnr_after": test_psnr(model, ds), "seconds": elapsed,
              "branches": shaper.branches}
    report["psnr_drop"] = report["psnr_before"] - report["psnr_after"]
    if gt is not None:
        report["activation_cosine"] = activation_report(model, gt.to(model.device), ds.split("train")[:4],
                                                        shaper.branches)
    files["shape_report.json"] = lambda p: write_json(p, report)
    activation_cache(model, default_segmentation_branch(model))  # shaped queries read it (one pass over N x d)
    commit_run(out, model, files)
    return report
