"""Row selection whose gradient is reproducible on CPU.

``t[index]`` with an integer tensor backpropagates through ``index_put_(accumulate=True)``,
which PyTorch's CPU kernel runs in parallel with atomic adds: where ``index`` repeats a row
(random batches drawn with replacement), the order of the additions -- and so the last bits of
the gradient -- changes from run to run with thread timing (300 backward passes of 4096 rows
drawn from 6000 gave 88 different gradients on 2 threads). ``index_select`` backpropagates
through ``index_add_``, which adds in index order: the same inputs give the same bits.
"""

from __future__ import annotations

import torch


def select_rows(t: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """``t[index]`` along the first dimension (``t`` itself when ``index`` is None) for integer
    ids or a boolean mask, with a run-to-run reproducible gradient."""
    if index is None:
        return t
    if index.dtype == torch.bool:
        index = index.nonzero().squeeze(1)
    return t.index_select(0, index.to(device=t.device, dtype=torch.long))


def add_at(target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``target[rows, cols] += values`` for a 2-D ``target``, repeated (row, col) pairs summed in
    order (``index_put_(accumulate=True)`` sums them in a thread-timing dependent order on CPU)."""
    flat = target.view(-1)
    flat.index_add_(0, rows * target.shape[1] + cols, values.to(target.dtype))
    return target
