"""Device selection: always explicit, never a hard-coded ``.cuda()``."""

from __future__ import annotations

import torch

from structgs.utils.errors import InputError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available on this machine")
    return dev
