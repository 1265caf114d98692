"""Atomic file writes: a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""

    def _write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")

    return atomic_write(path, _write)


def save_npy(path: str | Path, array) -> Path:
    """``np.save``, atomically (a kill leaves the old file or none, never a truncated one)."""
    import numpy as np

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, _write)


def refuse_overwrite(out: Path, inputs: list[Path], what: str = "output") -> None:
    """Raise if ``out`` is one of the inputs (never overwrite a user's input)."""
    out_r = Path(out).resolve()
    for p in inputs:
        if p is not None and Path(p).resolve() == out_r:
            raise ValueError(f"{what} {out} is also an input; choose another path")


def replace_dir_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a directory's content into a sibling temp dir, then swap it into place.

    Readers never see a half-written directory; an existing ``target`` is replaced whole.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
