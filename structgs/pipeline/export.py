"""``structgs export``'s job: a run (or a selection of it) as an INRIA PLY that standard 3DGS
viewers and tools open.

The file keeps what the input PLY had: its SH degree (the decoder's view-dependent colours
projected onto it, structgs.model.plain) and its normals fields. Gaussians that removals made
transparent (``SceneModel.removed``) are left out unless asked for. Every check runs before the
scene is decoded; the PLY is written atomically, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from structgs.model import SceneModel
from structgs.pipeline.render_views import load_selection
from structgs.pipeline.runs import run_dataset
from structgs.scene.ply import write_ply
from structgs.utils.errors import InputError
from structgs.utils.io import ensure_writable_dir, refuse_overwrite
from structgs.utils.log import get_logger

log = get_logger("export")


def check_export_path(out: Path, run: Path, inputs: list[Path | None]) -> None:
    """Refuse, before any work, an output that is not a .ply file path, lies inside the run, is
    one of the inputs, or sits in a folder that cannot be written."""
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"--out {out}: export writes an INRIA PLY; give a path ending in .ply")
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a .ply file path")
    if Path(run).resolve() in out.resolve().parents:
        raise InputError(f"--out {out} lies inside the run {run}; write exports outside it")
    refuse_overwrite(out, inputs, "--out")
    ensure_writable_dir(out.parent, "--out")


def export_run(run: Path, out: Path, *, selection: Path | None = None, invert: bool = False,
               view: str | None = None, data: Path | None = None, sh_degree: int | None = None,
               keep_removed: bool = False, device: str = "cpu", progress: bool = True) -> dict:
    """Write ``run``'s decoded scene to ``out`` (an INRIA PLY) and say what was written.

    ``selection``: a .npy of Gaussian ids or booleans (from ``structgs segment`` or the
    viewer); only those Gaussians are written, or with ``invert`` all the others.
    ``view``: colours as that training/test view sees them (SH degree 0) instead of SH.
    ``sh_degree``: default the input PLY's. ``keep_removed``: also write removed Gaussians.
    """
    if sh_degree is not None and not 0 <= sh_degree <= 3:
        raise InputError(f"--sh-degree must be 0..3, got {sh_degree}")
    if invert and selection is None:
        raise InputError("--invert needs --selection SEL.npy")
    model = SceneModel.from_pretrained(run, device)
    check_export_path(out, run, [selection, model.scene.source_ply])
    keep = torch.ones(model.num_gaussians, dtype=torch.bool)
    if selection is not None:
        chosen = load_selection(selection, model.num_gaussians)
        keep = ~chosen if invert else chosen
    removed = model.removed.cpu() & keep
    if not keep_removed:
        keep &= ~model.removed.cpu()
    if not keep.any():
        raise InputError(f"nothing to export: the selection{' (inverted)' if invert else ''} holds no Gaussian "
                         f"that is not removed (--keep-removed writes removed ones too)")
    cam = run_dataset(model, data).camera(view) if view is not None else None
    degree = model.scene.sh_degree if sh_degree is None else sh_degree
    g = model.to_gaussians(cam, sh_degree=0 if cam is not None else degree, progress=progress).subset(keep)
    write_ply(g, out)
    info = {"path": str(out), "written": len(g), "of": model.num_gaussians, "sh_degree": g.sh_degree,
            "normals": model.scene.normals, "removed_left_out": 0 if keep_removed else int(removed.sum())}
    log.info("exported %d of %d Gaussians (SH degree %d) -> %s", len(g), model.num_gaussians, g.sh_degree, out)
    return info
