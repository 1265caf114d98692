"""Optional tinycudann trunk for the branch MLPs (CUDA only; users build tinycudann themselves).

With ``backend='tcnn'`` the layers *before* a branch's perturbable layer -- the bulk of the
work over N Gaussians -- run as one tinycudann FullyFusedMLP; the perturbable layer and what
follows stay torch ``nn.Linear`` layers, so weight access, activations, Jacobians, shaping
and edits are the same code as the torch reference. Differences from the torch trunk, which
come from tinycudann itself: no bias terms (a constant-1 input channel stands in for the
first layer's bias), half-precision weights and activations, widths 16/32/64/128 only, and
its own parameter layout (a tcnn run cannot be loaded as a torch run or vice versa).
"""

from __future__ import annotations

import torch
from torch import nn

from structgs.utils.errors import InputError, MissingDependencyError

TCNN_WIDTHS = (16, 32, 64, 128)


def require_tcnn():
    try:
        import tinycudann
    except ImportError as e:
        raise MissingDependencyError(
            "decoder backend 'tcnn' needs tinycudann, which has no wheel: build it with\n"
            "  pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch\n"
            "on a CUDA machine, or use backend='torch' (the reference implementation)") from e
    return tinycudann


class TcnnTrunk(nn.Module):
    """x (B, in_dim) -> a (B, width): ``num_layers`` fused ReLU layers, output ReLU, float32 out."""

    def __init__(self, in_dim: int, width: int, num_layers: int):
        super().__init__()
        if width not in TCNN_WIDTHS:
            raise InputError(f"decoder backend 'tcnn': tinycudann FullyFusedMLP needs hidden_width in "
                             f"{TCNN_WIDTHS}, got {width}")
        if num_layers < 1:
            raise InputError("decoder backend 'tcnn': the trunk needs at least one layer before the perturbable one")
        tcnn = require_tcnn()
        self.in_dim, self.width = in_dim, width
        self.net = tcnn.Network(in_dim + 1, width, {
            "otype": "FullyFusedMLP", "activation": "ReLU", "output_activation": "ReLU",
            "n_neurons": width, "n_hidden_layers": num_layers - 1})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise InputError(f"tcnn trunk: expected inputs (B, {self.in_dim}), got {tuple(x.shape)}")
        ones = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
        return self.net(torch.cat([x, ones], dim=-1)).float()
