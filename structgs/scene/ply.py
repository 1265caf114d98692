"""INRIA-format 3DGS PLY read/write (x y z [nx ny nz] f_dc_* [f_rest_*] opacity scale_* rot_*).

Values are kept in float32 end to end so that read -> write -> read is bit-exact.
``f_rest`` follows the INRIA layout: channel-major, i.e. ``f_rest_{c*(K-1)+k}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from structgs.scene.gaussians import Gaussians
from structgs.utils.io import atomic_write
from structgs.utils.log import get_logger
from structgs.utils.errors import MissingFileError

log = get_logger("ply")

REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]


class PlyFormatError(ValueError):
    """A PLY file that is not a readable INRIA-format 3DGS file."""


def _fail(path: Path, msg: str) -> PlyFormatError:
    return PlyFormatError(f"{path}: {msg}")


def read_ply(path: str | Path) -> Gaussians:
    """Read an INRIA-format 3DGS PLY into a :class:`Gaussians` (float32, CPU)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such PLY file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"ply\n" and magic[:3] != b"ply":
        raise _fail(path, f"not a PLY file (starts with {magic!r}, expected b'ply')")
    try:
        ply = PlyData.read(str(path))
    except Exception as e:  # plyfile raises several types for truncated/garbled files
        raise _fail(path, f"could not parse PLY ({type(e).__name__}: {e}); is it truncated?") from e
    if "vertex" not in ply:
        raise _fail(path, "no 'vertex' element")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise _fail(path, f"missing 3DGS fields {missing} (has {sorted(names)})")
    n = len(v)
    if n == 0:
        raise _fail(path, "contains no Gaussians")

    def cols(keys: list[str]) -> torch.Tensor:
        arr = np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], axis=1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    rest_keys = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
    if len(rest_keys) % 3:
        raise _fail(path, f"{len(rest_keys)} f_rest_* fields is not a multiple of 3")
    k_rest = len(rest_keys) // 3
    if (k_rest + 1) not in (1, 4, 9, 16):
        raise _fail(path, f"{len(rest_keys)} f_rest_* fields do not match SH degree 0..3")
    expected_rest = [f"f_rest_{i}" for i in range(3 * k_rest)]
    if rest_keys != expected_rest:
        raise _fail(path, "f_rest_* fields are not numbered 0..M-1")
    dc = cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :]
    if k_rest:
        rest = cols(rest_keys).reshape(n, 3, k_rest).transpose(1, 2)
        sh = torch.cat([dc, rest], dim=1).contiguous()
    else:
        sh = dc.contiguous()
    normals = cols(["nx", "ny", "nz"]) if {"nx", "ny", "nz"} <= names else None
    g = Gaussians(
        means=cols(["x", "y", "z"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=cols(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=cols(["opacity"])[:, 0].contiguous(),
        sh=sh,
        normals=normals,
    )
    g.validate_finite(str(path))
    known = set(REQUIRED) | set(rest_keys) | {"nx", "ny", "nz"}
    extra = sorted(names - known)
    if extra:
        log.info("%s: ignoring non-3DGS vertex properties %s", path, extra)
    log.debug("read %d Gaussians (SH degree %d) from %s", n, g.sh_degree, path)
    return g


def gaussians_to_ply_array(g: Gaussians, with_normals: bool | None = None) -> np.ndarray:
    """The structured vertex array that :func:`write_ply` writes."""
    g = g.detach().to("cpu", torch.float32)
    n, k = len(g), g.sh.shape[1]
    if with_normals is None:
        with_normals = g.normals is not None
    names = ["x", "y", "z"]
    if with_normals:
        names += ["nx", "ny", "nz"]
    names += ["f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    normals = g.normals if g.normals is not None else torch.zeros(n, 3)
    parts = [g.means]
    if with_normals:
        parts.append(normals)
    parts += [g.sh[:, 0], g.sh[:, 1:].transpose(1, 2).reshape(n, -1), g.opacity_logits[:, None], g.log_scales, g.quats]
    data = torch.cat(parts, dim=1).numpy()
    arr = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        arr[name] = data[:, i]
    return arr


def write_ply(g: Gaussians, path: str | Path, with_normals: bool | None = None) -> Path:
    """Write ``g`` as a binary little-endian INRIA PLY, atomically.

    ``with_normals``: write nx ny nz (zeros when ``g`` has none); default: iff ``g`` has them.
    """
    g.validate_finite("Gaussians to write")
    arr = gaussians_to_ply_array(g, with_normals)
    el = PlyElement.describe(arr, "vertex")
    return atomic_write(path, lambda tmp: PlyData([el], text=False, byte_order="<").write(str(tmp)))
