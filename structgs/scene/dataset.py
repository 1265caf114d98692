"""Posed image datasets (Blender/NeRF-synthetic and COLMAP) and their id masks.

Views are addressed by name: the image path relative to the images root, without extension
(Blender ``./train/r_0`` -> ``train/r_0``; COLMAP ``images/IMG_1.jpg`` -> ``IMG_1``). The id
mask of a view is ``<masks dir>/<name>.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from structgs.scene.cameras import Camera, intrinsics, opengl_to_opencv_c2w
from structgs.scene.colmap import qvec_to_rotmat, read_model, read_points
from structgs.scene.images import find_image, load_id_mask, load_rgb
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError, MissingFileError

log = get_logger("dataset")

Format = Literal["auto", "blender", "colmap"]
SPLITS = ("train", "test", "val")


@dataclass
class SceneDataset:
    """Cameras per split plus lazy, cached image and mask loading.

    Attributes:
        root: the dataset directory.
        format: ``blender`` or ``colmap``.
        cameras: split name -> list of cameras (already downscaled).
        image_paths: view name -> image file.
        background: RGB used to composite RGBA images.
        masks_dir: directory of id masks (``<masks_dir>/<view name>.png``) or None.
    """

    root: Path
    format: str
    cameras: dict[str, list[Camera]]
    image_paths: dict[str, Path]
    background: tuple[float, float, float]
    masks_dir: Path | None = None
    _image_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> list[Camera]:
        if name not in self.cameras:
            raise InputError(f"{self.root}: unknown split '{name}'; this dataset has {sorted(self.cameras)}")
        return self.cameras[name]

    @property
    def all_cameras(self) -> list[Camera]:
        return [c for cams in self.cameras.values() for c in cams]

    def camera(self, view: str) -> Camera:
        for c in self.all_cameras:
            if c.name == view:
                return c
        names = [c.name for c in self.all_cameras]
        hint = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise InputError(f"{self.root}: unknown view '{view}' (views are named like: {hint})")

    def image(self, camera: Camera) -> torch.Tensor:
        """(H, W, 3) float32 image of ``camera``, resized to the camera's size."""
        if camera.name not in self._image_cache:
            self._image_cache[camera.name] = load_rgb(
                self.image_paths[camera.name], self.background, (camera.width, camera.height))
        return self._image_cache[camera.name]

    def mask_path(self, camera: Camera, masks_dir: Path | None = None) -> Path:
        d = masks_dir or self.masks_dir
        if d is None:
            raise InputError("no masks directory given")
        return Path(d) / f"{camera.name}.png"

    def mask(self, camera: Camera, masks_dir: Path | None = None) -> torch.Tensor:
        """(H, W) int64 id mask of ``camera`` (size checked against the camera)."""
        return load_id_mask(self.mask_path(camera, masks_dir), (camera.width, camera.height))

    def scene_extent(self) -> tuple[torch.Tensor, float]:
        """Centre of the camera centres and the radius enclosing them (3DGS's nerf normalisation)."""
        centers = torch.stack([c.center for c in self.all_cameras])
        mid = centers.mean(0)
        return mid, float((centers - mid).norm(dim=1).max()) * 1.1

    def mean_camera_distance(self) -> float:
        """Mean distance of the cameras from the centre of the camera centres."""
        centers = torch.stack([c.center for c in self.all_cameras])
        return float((centers - centers.mean(0)).norm(dim=1).mean())


def detect_format(root: Path) -> str:
    """``blender`` if transforms_*.json exist, ``colmap`` if sparse/0 exists, else an error."""
    if any((root / f"transforms_{s}.json").is_file() for s in SPLITS):
        return "blender"
    if (root / "sparse" / "0").is_dir() or (root / "sparse").is_dir():
        return "colmap"
    raise MissingFileError(f"{root}: neither a Blender dataset (transforms_*.json) nor a COLMAP one (sparse/0)")


def load_dataset(root: str | Path, format: Format = "auto", downscale: float = 1.0,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0), masks_dir: str | Path | None = None,
                 test_every: int = 8) -> SceneDataset:
    """Load a dataset's cameras. ``format="auto"`` detects it and logs what it found."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: dataset directory does not exist")
    if format == "auto":
        format = detect_format(root)  # type: ignore[assignment]
        log.info("%s: detected a %s dataset", root, format)
    if format == "blender":
        ds = _load_blender(root, downscale, background)
    elif format == "colmap":
        ds = _load_colmap(root, downscale, background, test_every)
    else:
        raise InputError(f"unknown dataset format '{format}' (blender, colmap or auto)")
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
        if not masks_dir.is_dir():
            raise MissingFileError(f"{masks_dir}: masks directory does not exist")
        ds.masks_dir = masks_dir
    return ds


def _load_blender(root: Path, downscale: float, background) -> SceneDataset:
    cameras: dict[str, list[Camera]] = {}
    paths: dict[str, Path] = {}
    for split in SPLITS:
        f = root / f"transforms_{split}.json"
        if not f.is_file():
            continue
        try:
            meta = json.loads(f.read_text())
            frames = meta["frames"]
        except (json.JSONDecodeError, KeyError) as e:
            raise InputError(f"{f}: not a valid transforms file ({e})") from e
        cams, first = [], None
        for i, fr in enumerate(frames):
            try:
                rel = fr["file_path"]
                c2w_gl = torch.tensor(fr["transform_matrix"], dtype=torch.float64)
            except KeyError as e:
                raise InputError(f"{f}: frame {i} lacks {e}") from e
            name = str(Path(rel).with_suffix("")) if Path(rel).suffix in (".png", ".jpg", ".jpeg") else str(Path(rel))
            name = name[2:] if name.startswith("./") else name
            img_path = find_image(root / name)
            w, h = _image_size(img_path, fr, meta)
            _check_image_size(img_path, (w, h), f"{f.name}'s w/h" if "w" in fr or "w" in meta else None)
            if "w" not in fr:  # one camera model for the split: every image the same size
                first = first or (name, w, h)
                if (w, h) != first[1:]:
                    raise InputError(f"{img_path}: image is {w}x{h} but {first[0]}'s is {first[1]}x{first[2]}; "
                                     f"{f.name} has one camera model (give per-frame w/h if the sizes really differ)")
            fx, fy, cx, cy = _blender_intrinsics(meta, fr, w, h, f)
            w2c = torch.linalg.inv(opengl_to_opencv_c2w(c2w_gl)).float()
            cam = Camera(name, w2c, intrinsics(fx, fy, cx, cy), w, h)
            cams.append(cam.scaled(downscale) if downscale != 1 else cam)
            paths[name] = img_path
        cameras[split] = cams
    if not cameras:
        raise MissingFileError(f"{root}: no transforms_{{train,test,val}}.json")
    return SceneDataset(root, "blender", cameras, paths, background)


def _check_image_size(path: Path, size: tuple[int, int], source: str | None) -> None:
    """An image must have the size its camera's intrinsics were made for (``source`` names where
    that size came from; None: from the image itself)."""
    if source is None:
        return
    from PIL import Image

    with Image.open(path) as im:
        if im.size != tuple(size):
            raise InputError(f"{path}: image is {im.size[0]}x{im.size[1]} but {source} says {size[0]}x{size[1]}; "
                             "its intrinsics would be wrong (resize the image or fix the camera)")


def _image_size(path: Path, frame: dict, meta: dict) -> tuple[int, int]:
    w, h = frame.get("w", meta.get("w")), frame.get("h", meta.get("h"))
    if w is None or h is None:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
    return int(w), int(h)


def _blender_intrinsics(meta: dict, fr: dict, w: int, h: int, f: Path) -> tuple[float, float, float, float]:
    get = lambda k: fr.get(k, meta.get(k))  # noqa: E731
    if get("fl_x") is not None:
        fx = float(get("fl_x"))
        fy = float(get("fl_y") or fx)
    elif get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
        fy = 0.5 * h / math.tan(0.5 * float(get("camera_angle_y"))) if get("camera_angle_y") is not None else fx
    else:
        raise InputError(f"{f}: needs camera_angle_x or fl_x/fl_y")
    cx = float(get("cx")) if get("cx") is not None else w / 2
    cy = float(get("cy")) if get("cy") is not None else h / 2
    return fx, fy, cx, cy


def _load_colmap(root: Path, downscale: float, background, test_every: int) -> SceneDataset:
    sparse = root / "sparse" / "0"
    if not sparse.is_dir():
        sparse = root / "sparse"
    cams, imgs = read_model(sparse)
    images_root = root / "images"
    cameras = []
    paths = {}
    for img in sorted(imgs.values(), key=lambda im: im.name):
        cam = cams.get(img.camera_id)
        if cam is None:
            raise InputError(f"{sparse}: image {img.name} refers to missing camera {img.camera_id}")
        fx, fy, cx, cy = cam.pinhole(sparse)
        w2c = torch.eye(4)
        w2c[:3, :3] = torch.from_numpy(qvec_to_rotmat(img.qvec)).float()
        w2c[:3, 3] = torch.from_numpy(img.tvec).float()
        name = str(Path(img.name).with_suffix(""))
        path = images_root / img.name
        if not path.is_file():
            raise MissingFileError(f"{path}: image listed in {sparse} is missing")
        _check_image_size(path, (cam.width, cam.height), f"camera {img.camera_id} in {sparse}")
        c = Camera(name, w2c, intrinsics(fx, fy, cx, cy), cam.width, cam.height)
        cameras.append(c.scaled(downscale) if downscale != 1 else c)
        paths[name] = path
    # the usual 3DGS/mip-NeRF 360 split: every `test_every`-th image is held out
    test = [c for i, c in enumerate(cameras) if test_every > 0 and i % test_every == 0]
    train = [c for i, c in enumerate(cameras) if not (test_every > 0 and i % test_every == 0)]
    return SceneDataset(root, "colmap", {"train": train, "test": test}, paths, background)


def load_init_points(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points (and colours in [0,1] when present) from a PLY point cloud or a COLMAP sparse dir."""
    path = Path(path)
    if path.is_dir():
        xyz, rgb = read_points(path)
        return torch.from_numpy(xyz), torch.from_numpy(rgb.astype(np.float32) / 255.0)
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"].data
    except Exception as e:
        raise InputError(f"{path}: cannot read a point cloud PLY ({e})") from e
    names = v.dtype.names
    if not {"x", "y", "z"} <= set(names):
        raise InputError(f"{path}: point cloud has no x/y/z fields")
    xyz = torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32))
    rgb = None
    if {"red", "green", "blue"} <= set(names):
        rgb = torch.from_numpy(np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float32) / 255.0)
    if not torch.isfinite(xyz).all():
        raise InputError(f"{path}: point cloud has NaN/inf coordinates")
    return xyz, rgb
