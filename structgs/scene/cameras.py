"""Pinhole cameras in the OpenCV convention (x right, y down, z forward)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from structgs.utils.checks import check_shape
from structgs.utils.errors import InputError


@dataclass
class Camera:
    """One posed view.

    Attributes:
        name: image path relative to the images root, without extension (``train/r_0``).
        world_to_camera: (4, 4) OpenCV world-to-camera matrix.
        K: (3, 3) intrinsics in pixels (pixel centres at +0.5).
        width, height: image size in pixels.
    """

    name: str
    world_to_camera: torch.Tensor
    K: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        check_shape(self.world_to_camera, (4, 4), f"camera {self.name}: world_to_camera")
        check_shape(self.K, (3, 3), f"camera {self.name}: K")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera {self.name}: invalid size {self.width}x{self.height}")

    @property
    def camera_to_world(self) -> torch.Tensor:
        return torch.linalg.inv(self.world_to_camera)

    @property
    def center(self) -> torch.Tensor:
        """Camera centre in world coordinates, (3,)."""
        R, t = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return -R.T @ t

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Camera:
        return replace(
            self,
            world_to_camera=self.world_to_camera.to(device=device, dtype=dtype),
            K=self.K.to(device=device, dtype=dtype),
        )

    def scaled(self, factor: float) -> Camera:
        """The camera for an image downscaled by ``factor`` (>= 1)."""
        if factor <= 0:
            raise InputError(f"downscale factor must be > 0, got {factor}")
        w, h = int(round(self.width / factor)), int(round(self.height / factor))
        K = self.K.clone()
        K[0] *= w / self.width
        K[1] *= h / self.height
        return replace(self, K=K, width=w, height=h)

    def view_directions(self, points: torch.Tensor) -> torch.Tensor:
        """Unit directions from the camera centre to ``points`` (N, 3)."""
        d = points - self.center.to(points)
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera matrix of a camera at ``eye`` looking at ``target``."""
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-8:  # looking along up: pick any perpendicular
        x = torch.linalg.cross(z, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    w2c = torch.eye(4, dtype=eye.dtype)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def opengl_to_opencv_c2w(c2w_gl: torch.Tensor) -> torch.Tensor:
    """Blender/NeRF camera-to-world (y up, z back) -> OpenCV camera-to-world."""
    return c2w_gl @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w_gl.dtype))


def opencv_to_opengl_c2w(c2w_cv: torch.Tensor) -> torch.Tensor:
    return c2w_cv @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w_cv.dtype))


def focal_from_fov(fov: float, size: int) -> float:
    return 0.5 * size / math.tan(0.5 * fov)
