"""What the browser draws: a model's Gaussians as viser splat arrays, selections as tints, and
dataset cameras as viser poses. Pure numpy/torch; no server here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from viser.transforms import SO3

from structgs.render.projection import covariance_3d
from structgs.scene.cameras import Camera

SELECTED_TINT = np.array([1.0, 0.85, 0.0], dtype=np.float32)
"""Shaped selection: blended towards yellow."""
VOTING_TINT = np.array([0.0, 0.8, 1.0], dtype=np.float32)
"""Voting's selection where it differs from the shaped one (compare): blended towards cyan."""
TINT_STRENGTH = 0.6


@dataclass(frozen=True)
class SplatArrays:
    """The arrays ``viser``'s ``add_gaussian_splats`` takes, float32."""

    centers: np.ndarray
    """(N, 3)."""
    covariances: np.ndarray
    """(N, 3, 3): R diag(s^2) R^T."""
    rgbs: np.ndarray
    """(N, 3) in [0, 1]."""
    opacities: np.ndarray
    """(N, 1) in [0, 1]."""

    def tinted(self, selected: np.ndarray | None, voting: np.ndarray | None = None) -> SplatArrays:
        """Selected Gaussians blended towards yellow; voting-only ones (compare) towards cyan."""
        rgbs = self.rgbs.copy()
        if voting is not None:
            only = voting & ~selected if selected is not None else voting
            rgbs[only] = (1 - TINT_STRENGTH) * rgbs[only] + TINT_STRENGTH * VOTING_TINT
        if selected is not None:
            rgbs[selected] = (1 - TINT_STRENGTH) * rgbs[selected] + TINT_STRENGTH * SELECTED_TINT
        return SplatArrays(self.centers, self.covariances, rgbs, self.opacities)


@torch.no_grad()
def splat_arrays(model, splats, rgbs: np.ndarray | None = None) -> SplatArrays:
    """``splats`` (the model decoded, e.g. ``EditSession.geometry()``) with view-independent
    colours (the browser sorts and blends splats itself, so a view-dependent colour would be
    right for one camera only). ``rgbs``: reuse colours computed before (an edit of opacity or
    motion leaves them; averaging the colour branch over 16 directions is most of the cost)."""
    as_np = lambda t: t.detach().float().cpu().numpy().astype(np.float32)  # noqa: E731
    if rgbs is None:
        rgbs = as_np(model.view_independent_colors().clamp(0, 1))
    cov = covariance_3d(splats.quats, splats.scales)
    return SplatArrays(as_np(splats.means), as_np(cov), rgbs, as_np(splats.opacities.reshape(-1, 1)))


@dataclass(frozen=True)
class ViewPose:
    """A dataset camera as viser wants it: OpenCV camera-to-world rotation (wxyz) and position,
    vertical field of view (radians) and aspect (width / height)."""

    name: str
    wxyz: np.ndarray
    position: np.ndarray
    fov: float
    aspect: float


def view_pose(camera: Camera) -> ViewPose:
    c2w = camera.camera_to_world.double().cpu().numpy()
    fov = 2.0 * float(np.arctan(0.5 * camera.height / float(camera.K[1, 1])))
    return ViewPose(camera.name, SO3.from_matrix(c2w[:3, :3]).wxyz, c2w[:3, 3].copy(), fov, camera.width / camera.height)


def scene_up(cameras: list[Camera]) -> np.ndarray:
    """The up direction the cameras agree on: the mean of their image-up axes (-y, OpenCV)."""
    ups = np.stack([-c.camera_to_world.double().cpu().numpy()[:3, 1] for c in cameras])
    up = ups.mean(0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-6 else np.array([0.0, 0.0, 1.0])
