"""Shared helpers for the benchmarks: peak memory and the built-in scene."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def builtin_scene(root: Path) -> Path:
    from structgs.data import SceneSpec, ensure_builtin_scene

    return ensure_builtin_scene(root / "scene", SceneSpec(), progress=False)
