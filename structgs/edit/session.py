"""An interactive editing session: pick a Gaussian from a ray or a pixel, segment its object,
edit it, undo it, compare with voting, and get the result as plain Gaussians.

This is the API ``structgs view`` calls; a notebook uses it the same way::

    session = EditSession(model)                       # a shaped run's model
    pick = session.pick_pixel(camera, x, y)            # or pick_ray(origin, direction)
    session.select(pick.gaussian)                      # its object, by Jacobian cosine
    session.select(other.gaussian, add=True)           # shift-click: one more object
    session.set_threshold(0.6)                         # re-thresholds the kept scores, no query
    session.remove(); session.undo()
    gaussians = session.selected_gaussians()           # write_ply(gaussians, "object.ply")

Picking uses the rule of the contributions query (Eq. 9): the Gaussian with the largest
blending weight alpha * T along the ray, found by rasterizing a one-pixel camera centred on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from structgs.edit.editor import REMOVED_FRACTION, WeightEditor
from structgs.edit.history import EditRecord, UsesHistory
from structgs.edit.jacobian import jacobian_cosine
from structgs.edit.segmentation import DEFAULT_THRESHOLD, SegmentationQuery, VotingSegmentation
from structgs.edit.selection import EmptySelectionError
from structgs.model.scene_model import Splats
from structgs.render.api import contributions
from structgs.render.projection import project
from structgs.scene.cameras import Camera, intrinsics, look_at
from structgs.scene.gaussians import Gaussians
from structgs.utils.errors import InputError

PICK_FOCAL = 1000.0
"""Focal length (pixels) of the one-pixel pick camera when the caller gives none: a pixel
footprint of 1/1000 of the distance, about one screen pixel of a 60-degree view 1000 px high."""


@dataclass(frozen=True)
class Pick:
    """The Gaussian under a click: its id, its blending weight alpha*T on the ray and its depth
    along the ray."""

    gaussian: int
    weight: float
    depth: float


@dataclass(frozen=True)
class SelectionSummary:
    """What the current selection is, for a status line."""

    count: int
    total: int
    seeds: tuple[int, ...]
    threshold: float
    mean_score: float
    """Mean score (max over the seeds' cosines) of the selected Gaussians."""

    @property
    def share(self) -> float:
        return self.count / max(1, self.total)

    def describe(self) -> str:
        if not self.seeds:
            return "nothing selected"
        objects = "1 click" if len(self.seeds) == 1 else f"{len(self.seeds)} clicks"
        return (f"{self.count:,} of {self.total:,} Gaussians ({100 * self.share:.1f} %) from {objects}; "
                f"threshold {self.threshold:.2f}, mean score {self.mean_score:.2f}")


@dataclass(frozen=True)
class Comparison:
    """Shaped vs voting selection of the same object."""

    target: int
    """Mask id voted for (the id most pixels of the clicked Gaussian's neighbourhood carry)."""
    voting: torch.Tensor
    """(N,) bool: voting's selection."""
    iou: float
    """3D IoU of the shaped and the voting selection (Gaussian sets)."""
    shaped_count: int
    voting_count: int


def ray_camera(origin, direction, focal: float = PICK_FOCAL) -> Camera:
    """A one-pixel OpenCV camera at ``origin`` looking along ``direction``."""
    o = torch.as_tensor(origin, dtype=torch.float32)
    d = torch.as_tensor(direction, dtype=torch.float32)
    if o.numel() != 3 or d.numel() != 3:
        raise InputError(f"pick ray: origin and direction must be 3-vectors, got shapes {tuple(o.shape)} and "
                         f"{tuple(d.shape)}")
    o, d = o.reshape(3), d.reshape(3)
    if not bool(torch.isfinite(o).all() & torch.isfinite(d).all()) or float(d.norm()) < 1e-12:
        raise InputError(f"pick ray needs a finite origin and a non-zero direction, got {o.tolist()}, {d.tolist()}")
    d = d / d.norm()
    helper = torch.tensor([0.0, 0.0, 1.0]) if abs(float(d[2])) < 0.9 else torch.tensor([1.0, 0.0, 0.0])
    return Camera("pick", look_at(o, o + d, helper), intrinsics(focal, focal, 0.5, 0.5), 1, 1)


class EditSession(UsesHistory):
    """Selection state and edits over one shaped model (see the module docstring).

    The selection is ``max_k cos(J_i, J_seed_k) > threshold`` or a seed itself: each click keeps
    its own score vector, so a second object added by shift-click is not averaged with the first
    (the mean of two orthogonal Jacobians would score both objects at only ~0.7). Undo, redo
    and reset act on the editor's history (:class:`UsesHistory`).
    """

    def __init__(self, model, threshold: float = DEFAULT_THRESHOLD, branch: str | None = None):
        if model.meta.get("shaping") is None:
            raise InputError("this run was never shaped: segmenting by Jacobian cosine needs `structgs shape` first")
        self.model, self.branch = model, branch
        self.threshold = self._checked_threshold(threshold)
        self.editor = WeightEditor(model, threshold=self.threshold)
        self.history = self.editor.history
        self._seeds: list[int] = []
        self._scores: torch.Tensor | None = None  # (N,) max over the seeds' cosines
        self._decoded: tuple[tuple, Splats] | None = None  # (model state stamp, its decode)
        self._loaded_opacity = self.geometry().opacities.reshape(-1).cpu()

    def geometry(self, camera: Camera | None = None) -> Splats:
        """The decoded Gaussians (means, rotations, scales, opacities; for picks, compare, removal
        and the viewer's splats; ``colors`` are the canonical view's). Decoded once
        per model state when geometry does not depend on the view (the default: only colour
        does), so clicks do not re-run the decoder; the state is told by the version counters
        of the model's tensors, which every edit, undo and load bumps."""
        if self.model.geometry_varies_with_view:
            with torch.no_grad():
                return self.model.decode(camera)
        stamp = tuple((t, t._version) for t in (*self.model.parameters(), *self.model.buffers()))
        cached = self._decoded
        if cached is None or len(cached[0]) != len(stamp) or any(
                a is not b or va != vb for (a, va), (b, vb) in zip(cached[0], stamp)):
            with torch.no_grad():
                self._decoded = (stamp, self.model.decode())
        return self._decoded[1]

    # --- picking --------------------------------------------------------------------------
    def pick_ray(self, origin, direction, focal: float = PICK_FOCAL) -> Pick | None:
        """The Gaussian with the largest alpha*T along the ray (rasterized by a one-pixel camera
        centred on it, ``focal`` pixels wide per unit of depth), or None when it hits nothing."""
        return self._pick(ray_camera(origin, direction, focal), 0, 0)

    def pick_pixel(self, camera: Camera, x: int, y: int) -> Pick | None:
        """The Gaussian with the largest alpha*T at pixel (x, y) of ``camera`` -- exactly the
        contributions query's top Gaussian there -- or None on background."""
        if not (0 <= x < camera.width and 0 <= y < camera.height):
            raise InputError(f"pixel ({x}, {y}) is outside view {camera.name} ({camera.width}x{camera.height})")
        return self._pick(camera, int(x), int(y))

    @torch.no_grad()
    def _pick(self, camera: Camera, x: int, y: int) -> Pick | None:
        s = self.geometry(camera)
        con = contributions(s.means, s.quats, s.scales, s.opacities, camera)
        gid = int(con.pixel_top_gaussian[y, x])
        if gid < 0:
            return None
        _, direction = pixel_ray(camera, x + 0.5, y + 0.5)
        depth = float((s.means[gid].float().cpu() - camera.center.float().cpu()) @ direction)
        return Pick(gid, float(con.pixel_top_weight[y, x]), depth)

    # --- selection ------------------------------------------------------------------------
    @staticmethod
    def _checked_threshold(t: float) -> float:
        if not -1.0 <= float(t) <= 1.0:
            raise InputError(f"threshold must be a cosine in [-1, 1], got {t}")
        return float(t)

    def select(self, gaussian: int, add: bool = False) -> SelectionSummary:
        """Select ``gaussian``'s object (``add``: in addition to the current selection)."""
        n = self.model.num_gaussians
        if not 0 <= int(gaussian) < n:
            raise InputError(f"Gaussian id must be in [0, {n}), got {gaussian}")
        seed = torch.zeros(n, dtype=torch.bool)
        seed[int(gaussian)] = True
        scores = jacobian_cosine(self.model, seed, self.branch).cpu()
        if add and self._scores is not None:
            self._scores, self._seeds = torch.maximum(self._scores, scores), [*self._seeds, int(gaussian)]
        else:
            self._scores, self._seeds = scores, [int(gaussian)]
        return self.summary()

    def set_threshold(self, threshold: float) -> SelectionSummary:
        """Re-threshold the kept scores (no new query)."""
        self.threshold = self._checked_threshold(threshold)
        return self.summary()

    def clear(self) -> None:
        self._seeds, self._scores = [], None

    @property
    def selection(self) -> torch.Tensor:
        """(N,) bool current selection (all False when nothing is selected)."""
        n = self.model.num_gaussians
        if self._scores is None:
            return torch.zeros(n, dtype=torch.bool)
        sel = self._scores > self.threshold
        sel[torch.tensor(self._seeds)] = True
        return sel

    @property
    def scores(self) -> torch.Tensor | None:
        """(N,) max over the clicks of cos(J_i, J_click), or None before the first click."""
        return self._scores

    def summary(self) -> SelectionSummary:
        sel = self.selection
        mean = float(self._scores[sel].mean()) if self._scores is not None else 0.0
        return SelectionSummary(int(sel.sum()), self.model.num_gaussians, tuple(self._seeds), self.threshold, mean)

    def _required_selection(self) -> torch.Tensor:
        sel = self.selection
        if not bool(sel.any()):
            raise EmptySelectionError("nothing is selected: click an object first")
        return sel

    # --- edits (weight perturbations, undoable) ---------------------------------------------
    def remove(self) -> EditRecord:
        return self.editor.remove(self._required_selection())

    def recolor(self, rgb) -> EditRecord:
        return self.editor.recolor(self._required_selection(), rgb)

    def move(self, translation) -> EditRecord:
        return self.editor.move(self._required_selection(), translation)

    @property
    def can_undo(self) -> bool:
        return bool(self.history.done)

    @property
    def can_redo(self) -> bool:
        return bool(self.history.undone)

    # --- compare ----------------------------------------------------------------------------
    def compare(self, cameras: list[Camera], masks: list[torch.Tensor],
                on_view: Callable[[int, int], None] | None = None) -> Comparison:
        """Voting's selection of the clicked object from id ``masks`` of ``cameras`` (ids
        consistent across views), and its 3D IoU with the current shaped selection."""
        shaped = self._required_selection()
        if len(cameras) != len(masks) or not cameras:
            raise InputError(f"compare needs one id mask per view, got {len(cameras)} views and {len(masks)} masks")
        target = self._target_id(cameras, masks)
        query = SegmentationQuery(cameras=tuple(cameras), target_masks=tuple(m == target for m in masks))
        voting = VotingSegmentation("voting", on_view=on_view)(self.model, query)
        union = int((shaped | voting).sum())
        return Comparison(target, voting, int((shaped & voting).sum()) / max(1, union), int(shaped.sum()),
                          int(voting.sum()))

    @torch.no_grad()
    def _target_id(self, cameras: list[Camera], masks: list[torch.Tensor], neighbours: int = 32) -> int:
        """The id the masks most often carry where the first click's Gaussian and its nearest
        neighbours project (centres only, no rasterization: occluded views are outvoted)."""
        g = self.geometry()
        seed = self._seeds[0]
        near = (g.means - g.means[seed]).norm(dim=-1).topk(min(neighbours, len(g.means)), largest=False).indices
        counts: dict[int, int] = {}
        for cam, m in zip(cameras, masks):
            c = cam.to(g.means.device, g.means.dtype)
            proj = project(g.means[near], g.quats[near], g.scales[near], c.world_to_camera, c.K, c.width, c.height)
            xy = proj.means2d.floor().long()
            ok = (proj.radii > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < c.width) & (xy[:, 1] >= 0) & (xy[:, 1] < c.height)
            ids = m.to(xy.device)[xy[ok, 1], xy[ok, 0]]
            for v, n in zip(*torch.unique(ids[ids > 0], return_counts=True)):
                counts[int(v)] = counts.get(int(v), 0) + int(n)
        if not counts:
            raise InputError("the clicked object carries no mask id in any view (id 0 everywhere it shows)")
        return max(counts, key=counts.get)

    # --- results as plain Gaussians ---------------------------------------------------------
    def removed(self) -> torch.Tensor:
        """(N,) bool: Gaussians removed before the run was loaded or by this session's edits
        (brought below :data:`~structgs.edit.editor.REMOVED_FRACTION` of their loaded opacity)."""
        now = self.geometry().opacities.reshape(-1).cpu()
        return self.model.removed.cpu() | (now < REMOVED_FRACTION * self._loaded_opacity)

    def scene_gaussians(self, camera: Camera | None = None, drop_removed: bool = True) -> Gaussians:
        """The edited scene as a 3DGS (view-dependent colours as SH of the input PLY's degree,
        or ``camera``'s colours); ``drop_removed`` leaves out what removals made transparent."""
        g = self.model.to_gaussians(camera, sh_degree=self.model.scene.sh_degree)
        return g.subset(~self.removed()) if drop_removed else g

    def selected_gaussians(self, camera: Camera | None = None) -> Gaussians:
        """The selected Gaussians as a 3DGS, as the edits left them."""
        return self.model.to_gaussians(camera, sh_degree=self.model.scene.sh_degree).subset(self._required_selection())


def pixel_ray(camera: Camera, u: float, v: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space origin and unit direction of the ray through image point (u, v)."""
    K, c2w = camera.K.float(), camera.camera_to_world.float()
    d_cam = torch.tensor([(u - float(K[0, 2])) / float(K[0, 0]), (v - float(K[1, 2])) / float(K[1, 1]), 1.0])
    d = c2w[:3, :3] @ d_cam
    return c2w[:3, 3].clone(), d / d.norm()
