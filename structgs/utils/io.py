"""Atomic file writes: a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structgs.utils.errors import InputError


def file_mode() -> int:
    """The mode a plainly created file gets here: 0o666 minus the process's umask."""
    try:  # Linux: read the umask without changing it (os.umask is set-and-get, racy with threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], None],
                 final_name: Callable[[Path], str] | None = None) -> Path:
    """Call ``write(tmp_path)``, give the file the mode the umask asks for (temporary files are
    created 0600), then rename it onto ``path`` (or, with ``final_name``, onto the name it
    returns for the written file, e.g. a content hash, in the same directory). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        dest = path if final_name is None else path.parent / final_name(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


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


def ensure_writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Check that the directory ``path`` exists and is writable, or can be created, so that a
    read-only place or a path under a file is found before any long work, not after it.
    Creates nothing."""
    path = Path(path)
    ancestor = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor) or str(p) == ".")
    if not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot write there ({ancestor} is not writable)")
    return path


def refuse_overwrite(out: Path, inputs: list[Path], what: str = "output") -> None:
    """Raise if ``out`` is one of the inputs (never overwrite a user's input)."""
    out_r = Path(out).resolve()
    for p in inputs:
        if p is not None and Path(p).resolve() == out_r:
            raise InputError(f"{what} {out} is also an input; choose another path")


def _staging(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}"


def finish_dir_replacement(target: str | Path) -> Path:
    """Bring ``target`` to a consistent state after a kill inside ``replace_dir_atomically``:
    a complete new version (``.NAME.new``) wins and is moved into place, else a version moved
    aside (``.NAME.old``) is moved back; unfinished writes are deleted. Returns ``target``."""
    import shutil

    target = Path(target)
    new, old, partial = (_staging(target, k) for k in ("new", "old", "partial"))
    if new.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(new, target)
    elif not target.exists() and old.is_dir():
        os.replace(old, target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
    return target


def replace_dir_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a directory's content beside ``target``, then swap it into place.

    Readers never see a half-written directory. A kill at any point leaves either the old or
    the new version recoverable under fixed names, and ``finish_dir_replacement`` (called here
    first, and by readers such as a resume) completes or undoes the swap: the written
    directory is renamed to ``.NAME.new`` only once complete, so it is never mistaken for one.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    finish_dir_replacement(target)
    partial = _staging(target, "partial")
    partial.mkdir()
    try:
        write(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, _staging(target, "new"))  # complete from here on
    return finish_dir_replacement(target)
