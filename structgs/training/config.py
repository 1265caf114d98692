"""Fitting configuration (nerfstudio-style: one documented field each)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from structgs.decoder import DecoderConfig


@dataclass(frozen=True)
class DensifyConfig:
    """Densify/prune policy for training from a point cloud (``--init``)."""

    start: int = 100
    """First stage-2 step at which densification may happen."""
    stop: int = 1500
    """Last stage-2 step at which densification may happen."""
    every: int = 100
    """Steps between densify/prune rounds."""
    grad_threshold: float = 0.0002
    """Mean screen-space gradient norm of a centroid above which it is cloned/split."""
    split_scale: float = 0.01
    """Gaussians larger than this (world units, max axis) are split instead of cloned."""
    min_opacity: float = 0.005
    """Gaussians below this opacity are pruned."""
    max_gaussians: int = 200_000
    """Never grow beyond this many Gaussians."""


@dataclass(frozen=True)
class FitConfig:
    """How ``structgs fit`` trains a scene model."""

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The decoder architecture."""
    stage1_iters: int = 2000
    """Attribute-regression steps on the input PLY (no rendering)."""
    stage1_batch: int = 8192
    """Gaussians per stage-1 step."""
    stage2_iters: int = 300
    """Photometric fine-tuning steps (one training view each)."""
    lr_latents: float = 1e-2
    """Adam learning rate of the latents (stage 1; stage 2 uses a tenth)."""
    lr_decoder: float = 3e-3
    """Adam learning rate of the decoder (stage 1; stage 2 uses a third)."""
    lr_centroids: float = 1.6e-4
    """Stage-2 learning rate of the centroids, times the scene extent (3DGS's position lr)."""
    ssim_weight: float = 0.2
    """lambda of D-SSIM in the photometric loss (1 - lambda) L1 + lambda D-SSIM."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour (RGBA images are composited on it)."""
    downscale: float = 1.0
    """Image downscale factor."""
    init_points: int = 20000
    """With ``--init random``: number of random points inside the scene box."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Densify/prune policy (used only when training from ``--init``)."""
    checkpoint_every: int = 200
    """Steps between atomic checkpoints (both stages)."""
    seed: int = 0
    """Random seed: the same seed gives the same result on CPU."""
    backend: str = "auto"
    """Render backend: auto, torch or gsplat."""
    compile_rasterizer: bool = False
    """Stage 2 with the torch backend: torch.compile the rasterizer's chunk kernels. Forward +
    backward up to ~1.25x faster on CPU at 20k Gaussians and no faster at 30k-100k
    (benchmarks/render.py), after ~30 s of compiling once per process (~8 s with inductor's
    cache warm). Where compiling fails (no C++ compiler) it warns and uses the eager kernels."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder"] = self.decoder.to_dict()
        return d
