"""View ordering and the 3D tracker: carry masks from view to view through the scene's Gaussians.

``order_views``: a greedy nearest-neighbour chain over the cameras (centre distance relative to
the scene size plus the angle between viewing directions), so that consecutive views look
alike and a video tracker (SAM 2, DEVA) sees a smooth "video".

``GaussianTracker`` (SA3D-style, needs the user's pre-trained 3DGS): every conditioned frame
votes its masks onto the Gaussians through the blending weights alpha*T (the masked-gradient
vote); a Gaussian belongs to an object when more than half of the weight it had in the views
where that object was conditioned fell inside the object's masks (a view that did not
condition an object -- it was missed there, or had not entered yet -- says nothing about it). ``track`` renders those per-object memberships into the next view.
"""

from __future__ import annotations

import torch

from structgs.render.api import contributions, rasterize
from structgs.scene.cameras import Camera
from structgs.scene.gaussians import Gaussians


def _forward(cam: Camera) -> torch.Tensor:
    return cam.camera_to_world[:3, 2]  # OpenCV: +z looks into the scene


def order_views(cameras: list[Camera], start: int = 0, angle_weight: float = 1.0) -> list[int]:
    """Indices of ``cameras`` as a proximity chain beginning at ``start``."""
    if not 0 <= start < len(cameras):
        raise IndexError(f"order_views: start {start} outside 0..{len(cameras) - 1}")
    centres = torch.stack([c.center.double() for c in cameras])
    dirs = torch.stack([_forward(c).double() for c in cameras])
    extent = (centres - centres.mean(0)).norm(dim=1).max().clamp_min(1e-9)
    dist = torch.cdist(centres, centres) / extent + angle_weight * (1 - dirs @ dirs.T)
    order, used = [start], {start}
    while len(order) < len(cameras):
        d = dist[order[-1]].clone()
        d[list(used)] = float("inf")
        nxt = int(d.argmin())
        order.append(nxt)
        used.add(nxt)
    return order


class GaussianTracker:
    """Tracker backed by a 3DGS scene (see the module docstring)."""

    def __init__(self, gaussians: Gaussians, cameras: dict[str, Camera], min_membership: float = 0.5):
        self.g = gaussians.detach()
        self.cameras = cameras
        self.min_membership = min_membership
        self.names: list[str] = []
        self.votes: dict[int, torch.Tensor] = {}  # per object: (N,) weight inside its masks
        self.seen: dict[int, torch.Tensor] = {}  # per object: (N,) weight in the views that conditioned it

    def start(self, names: list[str], images: list[torch.Tensor]) -> None:
        missing = [n for n in names if n not in self.cameras]
        if missing:
            raise KeyError(f"GaussianTracker: no camera for views {missing[:3]}")
        self.names = list(names)
        self.votes, self.seen = {}, {}

    def _camera(self, frame: int) -> Camera:
        return self.cameras[self.names[frame]]

    @torch.no_grad()
    def condition(self, frame: int, masks: dict[int, torch.Tensor]) -> None:
        cam = self._camera(frame)
        ids = list(masks)
        ones = torch.ones(cam.height, cam.width, 1)
        weights = torch.cat([ones] + [masks[i].float()[..., None] for i in ids], -1).to(self.g.means)
        c = contributions(self.g.means, self.g.quats, self.g.scales, self.g.opacities, cam, pixel_weights=weights)
        for k, oid in enumerate(ids):
            if oid not in self.votes:
                self.votes[oid] = torch.zeros(len(self.g), dtype=self.g.means.dtype, device=self.g.device)
                self.seen[oid] = torch.zeros_like(self.votes[oid])
            self.seen[oid] += c.weighted_sums[:, 0]
            self.votes[oid] += c.weighted_sums[:, k + 1]

    def membership(self) -> tuple[list[int], torch.Tensor]:
        """Object ids and the (N, K) fraction of each Gaussian's observed weight inside each object."""
        ids = sorted(self.votes)
        if not ids:
            return [], torch.zeros(len(self.g), 0)
        seen = torch.stack([self.seen[i] for i in ids], -1)
        frac = torch.stack([self.votes[i] for i in ids], -1) / seen.clamp_min(1e-12)
        return ids, frac

    @torch.no_grad()
    def track(self, frame: int) -> dict[int, torch.Tensor]:
        ids, frac = self.membership()
        if not ids:
            return {}
        member = (frac > self.min_membership).to(self.g.means.dtype)
        cam = self._camera(frame)
        r = rasterize(self.g.means, self.g.quats, self.g.scales, self.g.opacities, member, cam)
        out = {}
        for k, oid in enumerate(ids):
            m = (r.image[..., k] > 0.5).cpu()
            if m.any():
                out[oid] = m
        return out
