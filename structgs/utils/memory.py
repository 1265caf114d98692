"""Large allocations that do not fault their pages in anew every time.

glibc's malloc serves a block above its mmap threshold (128 KB at start, rising with freed
blocks to at most 32 MB) with a fresh ``mmap`` and unmaps it on free, so every such allocation
page-faults all its memory in again, zero-filled by the kernel. A fitting step over 2M
Gaussians allocates its 256 MB latent gradient and the decoder's intermediates anew each step:
measured (fit stage 1, 8192 rows a step, 2 cores) 174 ms a step with glibc's defaults, 104 ms
with :func:`keep_freed_memory` (1M: 113 -> 93 ms; 100k: 69 -> 57 ms). It raises the mmap and
trim thresholds (``mallopt``), so large blocks come from the heap and freed memory stays with
the process for the next step. The price: resident memory does not shrink after a peak until
the process ends (structgs jobs are processes that end; measured peaks in docs/measurements.md).
The CLI calls it at start; ``STRUCTGS_KEEP_FREED_MEMORY=0`` keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30
"""Blocks up to 1 GB come from the heap; up to 1 GB of freed memory at its top is kept."""


def keep_freed_memory(threshold: int = THRESHOLD) -> bool:
    """Ask glibc to serve blocks below ``threshold`` bytes from the heap and keep freed memory.
    Returns whether it took effect: False off glibc (macOS, musl, Windows), or when
    ``STRUCTGS_KEEP_FREED_MEMORY=0``."""
    if os.environ.get("STRUCTGS_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library by that name, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
