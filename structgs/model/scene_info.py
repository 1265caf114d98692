"""What a run knows about the scene it was fitted on: typed, frozen, persisted in config.json
(``scene``) and validated on load. Free-form provenance (the fit's and shaping's configs, the
edit history) stays in ``meta`` and never changes what a model decodes or renders."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from structgs.utils.errors import InputError
from structgs.utils.fields import check_fields


NORMALS = ("none", "zeros", "stored")


def normals_kind(normals) -> str:
    """How a PLY's normals are kept (see :attr:`SceneInfo.normals`): None -> none, all zero ->
    zeros, else stored."""
    if normals is None:
        return "none"
    return "zeros" if not bool(normals.abs().gt(0).any()) else "stored"


@dataclass(frozen=True)
class SceneInfo:
    """The fitted scene's statistics and where its data came from."""

    data: str | None = None
    """Dataset directory the run was fitted on (jobs reopen it unless given --data)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour the images were composited on."""
    downscale: float = 1.0
    """Image downscale factor the run was fitted at."""
    scene_extent: float = 1.0
    """Radius enclosing the camera centres (3DGS's nerf normalisation), times 1.1."""
    mean_camera_distance: float = 4.0
    """Mean distance of the cameras from their centre: the camera distance of view-independent
    decoding when the decoder sees distances (``view_inputs`` = ``dir+dist``)."""
    source_ply: str | None = None
    """The pre-trained 3DGS the run was fitted to (None when fitted from points)."""
    init: str | None = None
    """The points the run was fitted from (None when fitted to a PLY)."""
    sh_degree: int = 0
    """SH degree of the input PLY: the degree ``structgs export`` writes by default (the
    decoder's view-dependent colours are projected onto it)."""
    normals: str = "none"
    """The input PLY's normals: ``none`` (no nx ny nz fields), ``zeros`` (the fields, all zero:
    INRIA's convention) or ``stored`` (non-zero: kept per Gaussian in the run, exported as read)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "background", tuple(float(x) for x in self.background))
        if len(self.background) != 3:
            raise InputError(f"scene.background must have 3 values, got {list(self.background)}")
        if self.normals not in NORMALS:
            raise InputError(f"scene.normals must be one of {list(NORMALS)}, got {self.normals!r}")
        if not 0 <= self.sh_degree <= 3:
            raise InputError(f"scene.sh_degree must be 0..3, got {self.sh_degree}")
        for name in ("downscale", "scene_extent", "mean_camera_distance"):
            if not getattr(self, name) > 0:
                raise InputError(f"scene.{name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["background"] = list(self.background)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "scene") -> SceneInfo:
        """From config.json's ``scene``; errors start with ``where`` and name the field."""
        check_fields(cls, d, where)
        for name in ("data", "source_ply", "init"):  # str | None fields: check_fields cannot tell from None
            if d.get(name) is not None and not isinstance(d[name], str):
                raise InputError(f"{where}.{name} must be a string or null, got {d[name]!r}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: {e}") from None

    @classmethod
    def from_legacy_meta(cls, meta: dict[str, Any], where: str = "meta") -> SceneInfo:
        """Runs written before ``scene`` existed kept these fields in ``meta``."""
        names = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in meta.items() if k in names}, where)
