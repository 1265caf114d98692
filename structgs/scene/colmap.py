"""A small COLMAP model reader (cameras, images, points3D; binary or text)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structgs.utils.errors import InputError, MissingFileError

# model id -> (name, number of params)
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
                 8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
MODEL_NPARAMS = {name: n for name, n in CAMERA_MODELS.values()}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def pinhole(self, source: Path) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy); distortion models must be undistorted first (like 3DGS)."""
        p = self.params
        if self.model == "SIMPLE_PINHOLE":
            return p[0], p[0], p[1], p[2]
        if self.model == "PINHOLE":
            return p[0], p[1], p[2], p[3]
        if self.model in ("SIMPLE_RADIAL", "RADIAL", "OPENCV") and np.allclose(p[3 if self.model != "OPENCV" else 4:], 0):
            return (p[0], p[0], p[1], p[2]) if self.model != "OPENCV" else (p[0], p[1], p[2], p[3])
        raise InputError(f"{source}: camera {self.id} uses the {self.model} model with distortion; "
                         "3DGS needs undistorted images: run `colmap image_undistorter` first")


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # wxyz, world-to-camera
    tvec: np.ndarray
    camera_id: int
    name: str


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _read(fh, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise EOFError("unexpected end of file")
    return struct.unpack("<" + fmt, data)


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    with open(path, "rb") as fh:
        (n,) = _read(fh, "Q")
        for _ in range(n):
            cid, model_id, w, h = _read(fh, "iiQQ")
            if model_id not in CAMERA_MODELS:
                raise InputError(f"{path}: unknown camera model id {model_id}")
            name, npar = CAMERA_MODELS[model_id]
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), np.array(_read(fh, "d" * npar)))
    return cams


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    imgs = {}
    with open(path, "rb") as fh:
        (n,) = _read(fh, "Q")
        for _ in range(n):
            props = _read(fh, "idddddddi")
            name = b""
            while (c := fh.read(1)) != b"\x00":
                if not c:
                    raise EOFError("unexpected end of file in an image name")
                name += c
            (npts,) = _read(fh, "Q")
            fh.seek(npts * 24, 1)  # x, y (double) + point3D id (int64)
            imgs[props[0]] = ColmapImage(props[0], np.array(props[1:5]), np.array(props[5:8]), props[8], name.decode())
    return imgs


def read_points3d_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    with open(path, "rb") as fh:
        (n,) = _read(fh, "Q")
        for _ in range(n):
            p = _read(fh, "QdddBBBd")
            xyz.append(p[1:4])
            rgb.append(p[4:7])
            (tl,) = _read(fh, "Q")
            fh.seek(tl * 8, 1)
    return np.asarray(xyz, np.float32).reshape(-1, 3), np.asarray(rgb, np.uint8).reshape(-1, 3)


def _text_lines(path: Path):
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for line in _text_lines(path):
        el = line.split()
        cid, model, w, h = int(el[0]), el[1], int(el[2]), int(el[3])
        if model not in MODEL_NPARAMS:
            raise InputError(f"{path}: unknown camera model {model}")
        cams[cid] = ColmapCamera(cid, model, w, h, np.array([float(x) for x in el[4:]]))
    return cams


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    imgs = {}
    body = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    # images.txt alternates: a pose line, then a (possibly empty) 2D points line
    for i in range(0, len(body), 2):
        el = body[i].split()
        if not el:
            continue
        iid = int(el[0])
        imgs[iid] = ColmapImage(iid, np.array([float(x) for x in el[1:5]]), np.array([float(x) for x in el[5:8]]),
                                int(el[8]), " ".join(el[9:]))
    return imgs


def read_points3d_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for line in _text_lines(path):
        el = line.split()
        xyz.append([float(x) for x in el[1:4]])
        rgb.append([int(x) for x in el[4:7]])
    return np.asarray(xyz, np.float32).reshape(-1, 3), np.asarray(rgb, np.uint8).reshape(-1, 3)


def read_model(sparse_dir: Path) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage]]:
    """Cameras and images of a COLMAP model folder (``sparse/0``), binary preferred."""
    try:
        if (sparse_dir / "cameras.bin").is_file():
            return read_cameras_binary(sparse_dir / "cameras.bin"), read_images_binary(sparse_dir / "images.bin")
        if (sparse_dir / "cameras.txt").is_file():
            return read_cameras_text(sparse_dir / "cameras.txt"), read_images_text(sparse_dir / "images.txt")
    except (EOFError, struct.error, IndexError, ValueError) as e:
        raise InputError(f"{sparse_dir}: corrupt COLMAP model ({e})") from e
    raise MissingFileError(f"{sparse_dir}: no cameras.bin or cameras.txt")


def read_points(sparse_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    if (sparse_dir / "points3D.bin").is_file():
        return read_points3d_binary(sparse_dir / "points3D.bin")
    if (sparse_dir / "points3D.txt").is_file():
        return read_points3d_text(sparse_dir / "points3D.txt")
    raise MissingFileError(f"{sparse_dir}: no points3D.bin or points3D.txt")
