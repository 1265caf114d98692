"""Segmentation strategies with one signature: ``strategy(model, query) -> (N,) bool``.

* :class:`ShapedSegmentation`: the Gaussians whose Jacobian is aligned with the seed's mean
  Jacobian, cos(J_i, Jbar_S) > threshold (docs/method.md §4); needs a shaped run and a seed.
* :class:`VotingSegmentation`: masked-gradient voting or its projection / binary baselines
  over the query's views and target masks (docs/method.md §5); training-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from structgs.edit.jacobian import jacobian_cosine
from structgs.edit.voting import METHODS as VOTING_METHODS
from structgs.edit.voting import segment_by_voting
from structgs.utils.errors import InputError

DEFAULT_THRESHOLD = 0.5
"""Shaped segmentation keeps Gaussians with cos(J_i, Jbar_S) above this. Shaped activations
sit near 1 within an object and near 0 across objects, so the midpoint separates them."""


@dataclass(frozen=True)
class SegmentationQuery:
    """What the user gave: the Gaussians they pointed at (``seed``, (N,) bool) and/or, for
    voting, views with the target's 2D mask in each ((H, W) bool per camera)."""

    seed: torch.Tensor | None = None
    cameras: tuple = ()
    target_masks: tuple = ()


class Segmentation(Protocol):
    def __call__(self, model, query: SegmentationQuery) -> torch.Tensor: ...


@dataclass(frozen=True)
class ShapedSegmentation:
    threshold: float = DEFAULT_THRESHOLD
    """cos(J_i, Jbar_S) above which a Gaussian joins the seed's object(s)."""
    branch: str | None = None
    """Branch whose Jacobians are compared (None: the default, see jacobian_cosine)."""

    def __call__(self, model, query: SegmentationQuery) -> torch.Tensor:
        if query.seed is None:
            raise InputError("shaped segmentation needs a selection (--gaussians, --view/--pixel or --view/--mask)")
        scores = jacobian_cosine(model, query.seed, self.branch)
        return (scores > self.threshold).cpu() | query.seed.cpu()


@dataclass(frozen=True)
class VotingSegmentation:
    method: str = "voting"
    """voting, projection or binary."""
    on_view: Callable[[int, int], None] | None = field(default=None, compare=False)
    """Called with (views done, views) after each view: progress for a GUI."""
    progress: bool = field(default=False, compare=False)
    """Show a progress bar over the views (terminal)."""

    def __post_init__(self) -> None:
        if self.method not in VOTING_METHODS:
            raise InputError(f"unknown voting method {self.method!r} ({', '.join(VOTING_METHODS)})")

    def __call__(self, model, query: SegmentationQuery) -> torch.Tensor:
        if not query.cameras or len(query.cameras) != len(query.target_masks):
            raise InputError(f"{self.method} needs views with one target mask each")
        return segment_by_voting(model, list(query.cameras), list(query.target_masks), self.method,
                                 progress=self.progress, on_view=self.on_view)


def segmentation(method: str, threshold: float | None = None, progress: bool = False) -> Segmentation:
    """The strategy for ``method`` (shaped, voting, projection, binary); ``progress``: a
    progress bar over the views (voting methods; shaped takes milliseconds)."""
    if method == "shaped":
        return ShapedSegmentation(DEFAULT_THRESHOLD if threshold is None else threshold)
    if threshold is not None:
        raise InputError(f"--threshold applies to shaped segmentation, not {method}")
    return VotingSegmentation(method, progress=progress)
