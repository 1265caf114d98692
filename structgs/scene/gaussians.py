"""The explicit 3DGS container: what an INRIA PLY holds, as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from structgs.utils.checks import check_shape
from structgs.utils.errors import InputError

SH_C0 = 0.28209479177387814  # Y_0^0, so that rgb = SH_C0 * f_dc + 0.5


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (0..3)."""
    if degree not in (0, 1, 2, 3):
        raise InputError(f"SH degree must be 0..3, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    for d in range(4):
        if (d + 1) ** 2 == k:
            return d
    raise InputError(f"{k} SH coefficients per channel is not (degree+1)^2 for degree 0..3")


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    return dc * SH_C0 + 0.5


@dataclass
class Gaussians:
    """N Gaussians in the INRIA parametrisation (raw, pre-activation values).

    Attributes:
        means: (N, 3) centres in world space.
        quats: (N, 4) rotations as wxyz quaternions (not necessarily normalised).
        log_scales: (N, 3) log of the standard deviations along the local axes.
        opacity_logits: (N,) logit of the opacity.
        sh: (N, K, 3) SH coefficients, K = (degree+1)^2; ``sh[:, 0]`` is the DC term.
        normals: optional (N, 3), kept only so a PLY that has them round-trips.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor
    normals: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        check_shape(self.means, ("N", 3), "means")
        check_shape(self.quats, (n, 4), "quats")
        check_shape(self.log_scales, (n, 3), "log_scales")
        check_shape(self.opacity_logits, (n,), "opacity_logits")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise InputError(f"sh: expected shape ({n}, K, 3), got {tuple(self.sh.shape)}")
        sh_degree_from_bases(self.sh.shape[1])
        if self.normals is not None:
            check_shape(self.normals, (n, 3), "normals")

    # --- derived quantities -------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def rgb_dc(self) -> torch.Tensor:
        """View-independent colour from the DC term (before clamping)."""
        return sh_dc_to_rgb(self.sh[:, 0])

    # --- manipulation ------------------------------------------------------------------
    def _map(self, fn) -> Gaussians:
        kw = {f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name))) for f in fields(self)}
        return Gaussians(**kw)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Gaussians:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> Gaussians:
        return self._map(lambda t: t.detach())

    def clone(self) -> Gaussians:
        return self._map(lambda t: t.clone())

    def subset(self, index: torch.Tensor) -> Gaussians:
        """Gaussians picked by a boolean mask or an index tensor."""
        return self._map(lambda t: t[index])

    def with_sh_degree(self, degree: int) -> Gaussians:
        """Truncate or zero-pad the SH coefficients to ``degree``."""
        k = num_sh_bases(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            pad = sh.new_zeros(len(self), k - sh.shape[1], 3)
            sh = torch.cat([sh, pad], dim=1)
        return replace(self, sh=sh)

    def validate_finite(self, source: str = "gaussians") -> None:
        """Raise ``ValueError`` naming the first field that holds NaN or inf."""
        for f in fields(self):
            t = getattr(self, f.name)
            if t is None:
                continue
            bad = ~torch.isfinite(t)
            if bad.any():
                rows = bad.reshape(len(self), -1).any(dim=1).nonzero().flatten()
                raise InputError(
                    f"{source}: field '{f.name}' has {int(bad.sum())} non-finite values "
                    f"(NaN/inf) in {rows.numel()} Gaussians, first at index {int(rows[0])}"
                )

    @staticmethod
    def cat(parts: list[Gaussians]) -> Gaussians:
        if not parts:
            raise InputError("Gaussians.cat needs at least one part")
        has_normals = all(p.normals is not None for p in parts)
        return Gaussians(
            means=torch.cat([p.means for p in parts]),
            quats=torch.cat([p.quats for p in parts]),
            log_scales=torch.cat([p.log_scales for p in parts]),
            opacity_logits=torch.cat([p.opacity_logits for p in parts]),
            sh=torch.cat([p.sh for p in parts]),
            normals=torch.cat([p.normals for p in parts]) if has_normals else None,  # type: ignore[misc]
        )
