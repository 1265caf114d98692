"""Shared helpers for the benchmarks: peak memory and the built-in scene."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def builtin_scene(root: Path, num_gaussians: int | None = None) -> Path:
    """The built-in scene under ``root`` (``scene``, or ``scene-<N>`` with another Gaussian count)."""
    from structgs.data import SceneSpec, ensure_builtin_scene

    if num_gaussians is None or num_gaussians == SceneSpec().num_gaussians:
        return ensure_builtin_scene(root / "scene", SceneSpec(), progress=False)
    return ensure_builtin_scene(root / f"scene-{num_gaussians}", SceneSpec(num_gaussians=num_gaussians), progress=False)
