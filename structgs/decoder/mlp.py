"""One branch of the decoder: a ReLU MLP with access to its perturbable layer.

Linear layers L_0..L_H (L_H is the output layer; ReLU after all but L_H). The perturbable
layer is L_k (1 <= k <= H); its input a_i is the activation that shaping aligns, and an edit
adds dW to L_k's weight. For a scalar output y of Gaussian i, dy/dW_k = delta_i a_i^T with
delta_i = dy/dz_k (z_k = W_k a_i + b_k).

An optional *side channel* g(x) (a small MLP on the branch input, leaky-ReLU outputs) is
appended to that activation, a_i = [h_i / h_scale, g_i], with zero weight columns in L_k
(and the weights on h scaled by h_scale): the branch computes exactly
what it computed before, but shaping can make g carry object identity without disturbing the
fitted attributes, and edits (which perturb all of W_k) reach the objects through g.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BranchActivations:
    """What a branch computes for a batch, around its perturbable layer."""

    output: torch.Tensor  # (B, out) raw output, before the branch's output activation
    activation: torch.Tensor  # (B, in_k) a: the input of the perturbable layer
    preact: torch.Tensor  # (B, out_k) z = W a + b: the perturbable layer's output


class BranchMLP(nn.Module):
    def __init__(self, in_dim: int, width: int, hidden_layers: int, out_dim: int, perturb_layer: int,
                 zero_init_output: bool = False, backend: str = "torch", side_width: int = 0, side_norm: float = 0.0):
        super().__init__()
        self.in_dim, self.width = in_dim, width
        dims = [in_dim] + [width] * hidden_layers + [out_dim]
        n = len(dims) - 1
        k = perturb_layer % n
        if k == 0:
            raise ValueError(f"perturb_layer {perturb_layer} selects the first layer, whose input is not an activation")
        self.perturb_index = k
        self.trunk: nn.Module | None = None
        if backend == "tcnn":  # layers 0..k-1 fused in tinycudann; placeholders keep the indices
            from structgs.decoder.tcnn_backend import TcnnTrunk

            self.trunk = TcnnTrunk(in_dim, width, k)
            self.layers = nn.ModuleList([nn.Identity() for _ in range(k)] +
                                        [nn.Linear(dims[i], dims[i + 1]) for i in range(k, n)])
        elif backend == "torch":
            self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(n))
        else:
            raise ValueError(f"decoder backend must be torch or tcnn, got {backend!r}")
        if zero_init_output:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
        self.side: nn.Sequential | None = None
        self.side_norm = float(side_norm)
        self.register_buffer("h_scale", torch.ones(()), persistent=side_width > 0)
        if side_width > 0:
            self.add_side_channel(side_width, norm=side_norm)

    @property
    def side_width(self) -> int:
        return 0 if self.side is None else self.side[-2].out_features

    def add_side_channel(self, width: int, h_scale: float = 1.0, norm: float = 0.0) -> None:
        """Append a side channel of ``width`` non-negative units to the perturbable layer's input.

        The perturbable layer gains ``width`` zero weight columns, so every output is unchanged
        (the extra products are exact zeros; only the matmul's summation order may differ).
        ``h_scale`` reparametrises the existing activation, a = [h / h_scale, g], with the
        layer's weights on h multiplied by h_scale (the same function): with h_scale about
        |h|, g soon dominates cos(a_i, a_j), so ReLU-positive cross-object cosines of h cannot
        keep objects from being orthogonal. ``norm`` > 0 rescales each g to that length: an edit
        along an object's mean activation then moves each of its Gaussians nearly alike
        (with free lengths a move of 0.45 spread its Gaussians by a std of 0.1).
        """
        if self.side is not None:
            raise ValueError(f"this branch already has a side channel (width {self.side_width})")
        if width <= 0:
            raise ValueError(f"side channel width must be > 0, got {width}")
        old = self.perturbable
        ref = old.weight
        # leaky ReLU (slope 0.01) at the end: practically non-negative, so "different objects"
        # means orthogonal, never opposite; a plain ReLU channel could switch off for a whole
        # object and, with no gradient left, stay off (seen on the built-in scene's colour
        # branch); softplus never dies but its positive floor shared by all objects made
        # separation slow (within-object cosine 0.5-0.7 after 300 steps on the test scene)
        self.side = nn.Sequential(nn.Linear(self.in_dim, self.width), nn.ReLU(), nn.Linear(self.width, width),
                                  nn.LeakyReLU(0.01)).to(device=ref.device, dtype=ref.dtype)
        new = nn.Linear(old.in_features + width, old.out_features).to(device=ref.device, dtype=ref.dtype)
        self.register_buffer("h_scale", torch.tensor(float(h_scale), device=ref.device, dtype=ref.dtype))
        self.side_norm = float(norm)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_features] = old.weight * self.h_scale
            new.bias.copy_(old.bias)
        self.layers[self.perturb_index] = new

    @property
    def perturbable(self) -> nn.Linear:
        """The linear layer that edits perturb."""
        return self.layers[self.perturb_index]  # type: ignore[return-value]

    def _run(self, x: torch.Tensor, start: int) -> torch.Tensor:
        last = len(self.layers) - 1
        for i in range(start, len(self.layers)):
            x = self.layers[i](x)
            if i < last:
                x = torch.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trunk is not None or self.side is not None:
            return self._run(self.activation(x), self.perturb_index)
        return self._run(x, 0)

    def trunk_output(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted layers' output entering the perturbable layer (without the side channel)."""
        if self.trunk is not None:
            return self.trunk(x)
        h = x
        for layer in self.layers[: self.perturb_index]:
            h = torch.relu(layer(h))
        return h

    def activation(self, x: torch.Tensor, trunk: torch.Tensor | None = None) -> torch.Tensor:
        """Only the input of the perturbable layer (stops there). ``trunk``: :meth:`trunk_output`
        of ``x`` if already known (shaping trains the side channel alone, so it keeps it)."""
        h = self.trunk_output(x) if trunk is None else trunk
        if self.side is None:
            return h
        g = self.side(x)
        if self.side_norm > 0:  # every Gaussian's g has the same length: edits act alike on an object
            g = self.side_norm * torch.nn.functional.normalize(g, dim=-1, eps=1e-8)
        return torch.cat([h / self.h_scale, g], dim=-1)

    def after_preact(self, z: torch.Tensor) -> torch.Tensor:
        """Raw output from the perturbable layer's output z."""
        if self.perturb_index == len(self.layers) - 1:
            return z
        return self._run(torch.relu(z), self.perturb_index + 1)

    def forward_with_activations(self, x: torch.Tensor) -> BranchActivations:
        a = self.activation(x)
        z = self.perturbable(a)
        return BranchActivations(self.after_preact(z), a, z)

    def from_activation(self, a: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output from the perturbable layer's input ``a`` (optionally with another weight)."""
        layer = self.perturbable
        z = nn.functional.linear(a, layer.weight if weight is None else weight, layer.bias)
        return self.after_preact(z)
