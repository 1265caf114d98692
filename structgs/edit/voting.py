"""Training-free comparison mode: masked-gradient voting, its two baselines, and pruning
(docs/method.md §5, after the voting paper [3] there).

For view v with target mask M_v, the gradient of sum_p M_v(p) C(p) w.r.t. Gaussian i's SH-DC
colour is proportional to sum_p M_v(p) w_i^v(p) (tested in tests/test_render.py), so votes
are read from the contributions query instead of running backward:
    voting:     votes_i = sum_v sum_p (M_v(p) - (1 - M_v(p))) w_i^v(p)
    binary:     votes_i = sum_v [sum_p M_v w_i > 0] - [sum_p (1 - M_v) w_i > 0]
    projection: votes_i = sum_v [centre of i inside M_v] - [centre inside the image, outside M_v]
selected = votes > 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

from structgs.render.api import contributions
from structgs.render.projection import project

EVERY_VIEW = dict(miniters=1, mininterval=0)
"""Progress over views shows every view, the last included: views are few and each takes
long enough (with the default 0.1 s interval a fast scan could end without showing n/n)."""

METHODS = ("voting", "projection", "binary")


@torch.no_grad()
def vote(model, cameras, target_masks: list[torch.Tensor], method: str = "voting", progress: bool = False,
         on_view: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N,) votes for the target over ``cameras`` with boolean (H, W) ``target_masks``;
    ``on_view(done, total)`` is called after each view (progress for a GUI)."""
    if method not in METHODS:
        raise ValueError(f"unknown voting method {method!r} ({', '.join(METHODS)})")
    if len(cameras) != len(target_masks) or not cameras:
        raise ValueError("vote needs one target mask per camera (and at least one camera)")
    votes = torch.zeros(model.num_gaussians, device=model.device)
    pairs = list(zip(cameras, target_masks))
    geometry = model.geometry_by_view()  # decoded once for every view unless it depends on the view
    for done, (cam, mask) in enumerate(tqdm(pairs, desc=f"{method} votes", disable=not progress, leave=False, **EVERY_VIEW), 1):
        if on_view is not None and done > 1:
            on_view(done - 1, len(pairs))
        s = geometry(cam)
        m = mask.to(model.device).float()
        if method == "projection":
            c = cam.to(model.device)
            p = project(s.means, s.quats, s.scales, c.world_to_camera, c.K, c.width, c.height)
            xy = p.means2d.floor().long()
            inside = (p.radii > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < c.width) & (xy[:, 1] >= 0) & (xy[:, 1] < c.height)
            hit = torch.zeros_like(inside)
            hit[inside] = m[xy[inside, 1], xy[inside, 0]] > 0.5
            votes += hit.float() - (inside & ~hit).float()
            continue
        con = contributions(s.means, s.quats, s.scales, s.opacities, cam, pixel_weights=torch.stack([m, 1 - m], -1))
        fg, bg = con.weighted_sums[:, 0], con.weighted_sums[:, 1]
        votes += (fg - bg) if method == "voting" else ((fg > 0).float() - (bg > 0).float())
    if on_view is not None:
        on_view(len(pairs), len(pairs))
    return votes


def segment_by_voting(model, cameras, target_masks, method: str = "voting", progress: bool = False,
                      on_view: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N,) bool selection: votes > 0."""
    return (vote(model, cameras, target_masks, method, progress, on_view) > 0).cpu()


@torch.no_grad()
def prunable(model, cameras, progress: bool = True) -> torch.Tensor:
    """(N,) bool: Gaussians whose blending weight is zero at every pixel of every view."""
    total = torch.zeros(model.num_gaussians, device=model.device)
    geometry = model.geometry_by_view()  # decoded once for every view unless it depends on the view
    for cam in tqdm(cameras, desc="pruning scan", disable=not progress, leave=False, **EVERY_VIEW):
        s = geometry(cam)
        total += contributions(s.means, s.quats, s.scales, s.opacities, cam).weight_sum
    return (total <= 0).cpu()


@torch.no_grad()
def keep_gaussians(model, keep: torch.Tensor):
    """A new model holding only the Gaussians in ``keep`` (same decoder)."""
    from structgs.model import SceneModel

    keep = keep.to(model.device)
    new = SceneModel(model.config, int(keep.sum()), dict(model.meta), model.scene).to(model.device)
    per_gaussian = model.per_gaussian()
    new.load_state_dict({k: (v[keep] if k in per_gaussian else v) for k, v in model.state_dict().items()})
    return new
