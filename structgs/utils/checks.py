"""Kornia-style shape checks whose errors name the expected and the actual shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from structgs.utils.errors import InputError


def check_shape(tensor: torch.Tensor, expected: Sequence[int | str | None], name: str) -> None:
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``expected``.

    Entries of ``expected`` are ints (exact), ``None`` or a string (any size; strings name
    the dimension in the message, e.g. ``("N", 3)``).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(
        e is None or isinstance(e, str) or int(e) == s for e, s in zip(expected, shape)
    )
    if not ok:
        exp = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise InputError(f"{name}: expected shape {exp}, got {shape}")


def check_same_length(name_to_tensor: dict[str, torch.Tensor]) -> int:
    """Check that all tensors share their first dimension; return it."""
    lengths = {k: int(v.shape[0]) for k, v in name_to_tensor.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"first dimensions differ: {lengths}")
    return next(iter(lengths.values()))
