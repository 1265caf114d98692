"""Cached activations: shaped segmentation as one pass over an (N x d) matrix (docs/method.md §4).

When a branch's perturbable layer is its output layer and the output activation is elementwise
and increasing (color, opacity, scale, motion), delta_i for channel c is s_i e_c with s_i > 0,
so with Jbar_S = mean_{j in S} delta_j a_j^T (only row c is non-zero, jbar = mean_S s_j a_j):

    cos(J_i, Jbar_S) = s_i a_i . jbar / (|s_i| |a_i| |jbar|) = (a_i / |a_i|) . (jbar / |jbar|)

A query is then one matrix-vector product with the unit activations, which only the decoder
*before* the perturbable layer, the latents and the centroids determine: edits (which perturb
the perturbable layer) never change them. The cache records a fingerprint of exactly those
tensors and is refused when it does not match (then it is rebuilt), and checks in-process
changes cheaply through the tensors' version counters. The activations' norms are cached too,
so the seed's direction jbar comes from the cache (|S| rows) rather than from the decoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from structgs.decoder.decoder import ELEMENTWISE_INCREASING
from structgs.utils.errors import InputError
from structgs.utils.io import atomic_write

CACHE_NAME = "activations-{branch}.safetensors"
CACHE_DTYPE = torch.float16
"""Dtype of the cached unit activations. A query reads the whole matrix once, so it runs at
memory bandwidth: float16 halves what it reads (a 20k x 128 query out of cache: 1.5 -> 0.35 ms;
1M rows: 75 -> 19 ms) and what the run stores; unit entries lose < 5e-4 each, scores < 1e-3."""


def cacheable(model, branch: str) -> bool:
    """Whether cos(J_i, Jbar_S) of ``branch`` equals the cosine of cached activations."""
    mlp = model.decoder.branches[branch]
    return branch in ELEMENTWISE_INCREASING and mlp.perturb_index == len(mlp.layers) - 1


def _activation_inputs(model, branch: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor the activations entering ``branch``'s perturbable layer depend on."""
    mlp = model.decoder.branches[branch]
    named = [("latents", model.latents), ("centroids", model.centroids), ("h_scale", mlp.h_scale)]
    for i, layer in enumerate(mlp.layers[: mlp.perturb_index]):
        named += [(f"layers.{i}.{n}", p) for n, p in layer.named_parameters()]
    for part in ("trunk", "side"):
        module = getattr(mlp, part)
        if module is not None:
            named += [(f"{part}.{n}", t) for n, t in [*module.named_parameters(), *module.named_buffers()]]
    return named


def activation_fingerprint(model, branch: str) -> str:
    """sha256 of the branch's activation inputs (values, shapes) and the config fields they use."""
    cfg = model.config
    h = hashlib.sha256(json.dumps({"branch": branch, "latent_dim": cfg.latent_dim,
                                   "position": [cfg.position_frequencies, list(cfg.position_center), cfg.position_scale],
                                   "side_norm": cfg.side_norm}, sort_keys=True).encode())
    for name, t in _activation_inputs(model, branch):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _stamp(model, branch: str) -> tuple:
    """Cheap in-process identity of the activation inputs: the tensors themselves (held, so a
    replaced tensor's memory cannot be reused under the same identity) and their in-place
    version counters."""
    return tuple((n, t, t._version) for n, t in _activation_inputs(model, branch))


def _same_stamp(a: tuple | None, b: tuple) -> bool:
    return a is not None and len(a) == len(b) and all(
        na == nb and ta is tb and va == vb for (na, ta, va), (nb, tb, vb) in zip(a, b))


@dataclass
class ActivationCache:
    """Unit activations (N, d) of one branch at the canonical view, their norms and their
    fingerprint."""

    branch: str
    unit: torch.Tensor
    fingerprint: str
    norms: torch.Tensor | None = None
    """(N,) float32 |a_i| (None in a cache written before norms were stored: never matches)."""
    _stamp: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    @torch.no_grad()
    def build(cls, model, branch: str, dtype: torch.dtype = CACHE_DTYPE, chunk: int = 262144) -> ActivationCache:
        """Activations of every Gaussian, chunked (bounded memory), normalised, in ``dtype``."""
        if not cacheable(model, branch):
            raise InputError(f"the {branch} branch's scores are not cosines of its activations (its perturbable "
                             f"layer is not its output layer, or its output activation couples channels)")
        n = model.num_gaussians
        first = model.activations(branch, torch.arange(min(1, n), device=model.device))
        unit = torch.empty(n, first.shape[1], dtype=dtype, device=model.device)
        norms = torch.empty(n, device=model.device)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            a = model.activations(branch, torch.arange(rows.start, rows.stop, device=model.device)).float()
            norms[rows] = a.norm(dim=-1)
            unit[rows] = (a / norms[rows, None].clamp_min(1e-30)).to(dtype)
        return cls(branch, unit, activation_fingerprint(model, branch), norms, _stamp(model, branch))

    def matches(self, model) -> bool:
        """Whether the cache holds ``model``'s activations (cheap when nothing changed in-process)."""
        if self.unit.shape[0] != model.num_gaussians or self.norms is None:
            return False
        stamp = _stamp(model, self.branch)
        if _same_stamp(self._stamp, stamp):
            return True
        if self.fingerprint != activation_fingerprint(model, self.branch):
            return False
        self._stamp = stamp
        return True

    def activations(self, index: torch.Tensor) -> torch.Tensor:
        """(len(index), d) float32 activations a_i = |a_i| (a_i / |a_i|) of the indexed Gaussians."""
        if self.norms is None:
            raise InputError(f"this {self.branch} activation cache holds no norms (written by an older structgs)")
        return self.unit.index_select(0, index).float().mul_(self.norms[index, None])

    @torch.no_grad()
    def cosines(self, direction: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
        """(N,) cos(a_i, direction) as float32, chunked (no float32 copy of the whole cache). On
        the CPU the products run in the cache's dtype (PyTorch's float16 matrix-vector product
        accumulates in float32; the pass is bandwidth-bound); elsewhere in float32 (cuBLAS may
        reduce float16 products in float16)."""
        native = self.unit.device.type == "cpu"
        d = direction.float().to(self.unit.device)
        d = d / d.norm().clamp_min(1e-30)
        d = d.to(self.unit.dtype) if native else d
        out = torch.empty(self.unit.shape[0], device=self.unit.device)
        for start in range(0, self.unit.shape[0], chunk):
            rows = self.unit[start:start + chunk]
            out[start:start + chunk] = rows @ d if native else rows.float() @ d
        return out

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        meta = {"branch": self.branch, "fingerprint": self.fingerprint}
        tensors = {"unit": self.unit.detach().cpu().contiguous()}
        if self.norms is not None:
            tensors["norm"] = self.norms.detach().cpu().contiguous()
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> ActivationCache:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                unit = f.get_tensor("unit")
                norms = f.get_tensor("norm") if "norm" in f.keys() else None
        except Exception as e:
            raise InputError(f"{path}: cannot read the activation cache ({e})") from e
        if "branch" not in meta or "fingerprint" not in meta or unit.ndim != 2:
            raise InputError(f"{path}: not an activation cache (metadata {sorted(meta)}, shape {tuple(unit.shape)})")
        if norms is not None and tuple(norms.shape) != (unit.shape[0],):
            raise InputError(f"{path}: activation norms of shape {tuple(norms.shape)}, expected ({unit.shape[0]},)")
        return cls(meta["branch"], unit.to(device), meta["fingerprint"], None if norms is None else norms.to(device))
