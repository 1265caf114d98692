"""The run layer: a run is a directory holding a model (``config.json`` + content-named
weights), the reports and files of the job that wrote it, and, while a job is under way, its
``checkpoint/``. ``config.json`` is written last by every job (it is the commit point), so a
directory without it is an unfinished run: readers refuse it, the job resumes it.

* :meth:`Run.open` reads a finished run: its model and the dataset it was fitted on.
* :func:`prepare_run_output` does every check of a job's output before any work.
* :func:`commit_run` writes a run's files, then its model (the commit point).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from structgs.model import SceneModel
from structgs.model.activation_cache import CACHE_NAME, ActivationCache
from structgs.scene.dataset import SceneDataset, load_dataset
from structgs.training.loop import Checkpointer
from structgs.utils.device import resolve_device
from structgs.utils.errors import InputError, MissingFileError
from structgs.utils.io import ensure_writable_dir
from structgs.utils.log import get_logger

log = get_logger("runs")

CONFIG = "config.json"


def is_finished_run(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def run_dataset(model: SceneModel, data: Path | None, downscale: float | None = None,
                background=None) -> SceneDataset:
    """The dataset a run was fitted on (or ``data``), with the run's background and downscale."""
    src = data if data is not None else model.scene.data
    if src is None:
        raise InputError("this run does not record its dataset; pass --data")
    if not Path(src).is_dir():
        raise MissingFileError(f"{src}: the run's dataset directory does not exist; pass --data")
    bg = tuple(background) if background is not None else model.scene.background
    ds_scale = downscale if downscale is not None else model.scene.downscale
    return load_dataset(src, background=bg, downscale=ds_scale)


@dataclass(frozen=True)
class Run:
    """A finished run, opened: where it is, its model and its dataset."""

    path: Path
    model: SceneModel
    dataset: SceneDataset

    @property
    def is_shaped(self) -> bool:
        return self.model.meta.get("shaping") is not None

    @classmethod
    def open(cls, path: str | Path, data: Path | None = None, device: str | torch.device = "auto",
             needs_shaping: bool = False, downscale: float | None = None, background=None) -> Run:
        """Open the run at ``path`` (its dataset from ``data`` or the one it records).
        ``needs_shaping``: refuse a run ``structgs shape`` never wrote (its decoder was not
        shaped, so Jacobian cosines mean nothing: a click would select most of the scene and a
        removal fade all of it)."""
        path = Path(path)
        if path.is_dir() and not is_finished_run(path) and Checkpointer(path, "any").path.is_dir():
            raise InputError(f"{path}: an unfinished run (a job was stopped before writing {CONFIG}); "
                             f"finish it with --resume")
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        model = SceneModel.from_pretrained(path, dev)
        load_activation_caches(path, model)
        if needs_shaping and model.meta.get("shaping") is None:
            raise InputError(f"{path}: not a shaped run (its config.json has no meta.shaping); shape it first with "
                             f"`structgs shape {path} --masks DIR --out SHAPED`, or use --method voting with --masks")
        return cls(path, model, run_dataset(model, data, downscale, background))


def prepare_run_output(out: str | Path, kind: str, resume: bool, inputs: dict[str, Path | None]) -> Checkpointer:
    """Before any work: ``out`` is none of the ``inputs`` (option -> path), holds no run unless
    resuming (and then a checkpoint of this ``kind`` of job), and is writable. Returns the
    job's checkpointer."""
    out = Path(out)
    for option, p in inputs.items():
        if p is not None and out.resolve() == Path(p).resolve():
            raise InputError(f"--out {out} is the {option}; choose another run directory")
    checkpointer = Checkpointer(out, kind)
    checkpointer.guard(resume)
    ensure_writable_dir(out)
    return checkpointer


def has_checkpoint(out: str | Path, kind: str) -> bool:
    """Whether ``out`` holds a checkpoint of a ``kind`` job to resume (an interrupted
    checkpoint swap is completed or undone first)."""
    checkpointer = Checkpointer(out, kind)
    checkpointer.recover()
    return checkpointer.exists()


def refuse_new_run_over(out: Path, run: Path, what: str) -> None:
    """A job that writes a new run never writes into its input run or over an existing one."""
    if Path(out).resolve() == Path(run).resolve():
        raise InputError(f"{what} {out} is the input run; {what.split()[0]} writes a new run")
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise InputError(f"{what} {out} already exists and is not an empty directory; choose a new path")
    ensure_writable_dir(out, what.split()[-1])


def load_activation_caches(path: Path, model: SceneModel) -> None:
    """Attach the run's activation caches that still match its model (a stale one is left out
    and rebuilt by the first query that needs it)."""
    for f in sorted(Path(path).glob(CACHE_NAME.format(branch="*"))):
        cache = ActivationCache.load(f, model.device)
        if cache.branch in model.decoder.branches and cache.matches(model):
            model.activation_caches[cache.branch] = cache
        elif cache.norms is None:
            log.warning("%s was written by an older structgs (no activation norms); it will be rebuilt when "
                        "needed", f)
        else:
            log.warning("%s does not match the run's model; it will be rebuilt when needed", f)


def commit_run(out: str | Path, model: SceneModel, files: dict[str, Callable[[Path], object]] | None = None) -> Path:
    """Write ``files`` (name -> writer of that path, each atomic) and the model's activation
    caches that match it, then the model: its ``config.json`` is the run's commit point, so
    readers never see a run missing its files."""
    out = Path(out)
    files = dict(files or {})
    for branch, cache in model.activation_caches.items():
        if cache.matches(model):
            files[CACHE_NAME.format(branch=branch)] = cache.save
    for name, write in files.items():
        write(out / name)
    return model.save_pretrained(out)
