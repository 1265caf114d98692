"""Consistent object ids across views (what DEVA does for the paper) and prompted propagation.

``associate``: views are visited in camera-proximity order. On each view the tracker predicts
the masks of the objects seen so far; the segmenter's automatic masks are matched to them
(Hungarian on mask IoU). A matched proposal continues that object's id (the fresh mask wins,
as in DEVA's integration step); a proposal that covers most of two tracked objects is a merge
and is dropped (else it would fuse them for good); a tracked object with no proposal keeps its propagated mask
in the output; a proposal mostly outside every known object enters as a new object with the
next free id. Only objects with a fresh mask on the view condition the tracker, so a view
where the segmenter missed an object neither confirms nor erodes it. A second pass fills the
objects missed on a view from the tracker as it stands after all views (it knows each object
from every side by then, like DEVA's bidirectional propagation).

``associate_by_consensus`` (with the scene's 3DGS): no chain at all; every view's proposals vote
onto the Gaussians and the objects are what most views agree on (masks.consensus).

``propagate_prompt``: one object from one prompt mask, carried along the proximity chain; each
propagated mask can be refined by prompting the segmenter again with points deep inside it
(SA3D's render-then-prompt loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from structgs.masks.base import Segmenter, Tracker, interior_points, mask_iou_matrix, paint_id_map
from structgs.masks.consensus import ConsensusConfig, FixedGaussians, consensus_labels, view_votes
from structgs.masks.fill import FillConfig, fill_labels
from structgs.render.api import rasterize
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError

log = get_logger("masks")


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds of the cross-view association."""

    match_iou: float = 0.5
    """A proposal continues a tracked object when their mask IoU is at least this."""
    new_object_max_overlap: float = 0.5
    """An unmatched proposal enters as a new object when less than this fraction of it is
    already covered by known objects."""
    min_area_fraction: float = 0.002
    """Proposals and tracked masks smaller than this fraction of the view are ignored."""
    refine_min_iou: float = 0.5
    """Prompted propagation: the segmenter's re-prompted mask replaces the tracked one when
    their IoU is at least this (otherwise the tracked mask is kept)."""
    refine_points: int = 3
    """Prompted propagation: positive points sampled inside the tracked mask."""
    merge_cover: float = 0.5
    """A proposal holding at least this fraction of each of two tracked (or consensus) objects'
    pixels on the view is a merge: it neither continues one object's id nor conditions the tracker."""
    band: int = 2
    """Consensus association: proposal pixels within this many pixels of an id change do not vote."""
    fill: FillConfig = field(default_factory=FillConfig)
    """Consensus association: Gaussians the votes leave unsure (unseen, too few views, low
    share) take their trusted neighbours' object before the consensus is rendered; else a small
    object the views rarely see renders mostly as background and its pixels are lost."""


@dataclass
class MaskSequence:
    order: list[str]  # view names in visiting order
    id_maps: dict[str, torch.Tensor]  # view name -> (H, W) int64 (0 = no object)
    objects: dict[int, dict] = field(default_factory=dict)  # id -> first view, views seen, pixels

    def summary(self) -> dict:
        return {"order": self.order, "objects": {str(k): v for k, v in sorted(self.objects.items())}}


def _record(seq: MaskSequence, name: str, id_map: torch.Tensor) -> None:
    seq.id_maps[name] = id_map
    for oid in id_map.unique().tolist():
        if oid == 0:
            continue
        info = seq.objects.setdefault(int(oid), {"first_view": name, "views": 0, "pixels": 0})
        info["views"] += 1
        info["pixels"] += int((id_map == oid).sum())


def associate(segmenter: Segmenter, tracker: Tracker, names: list[str], images: list[torch.Tensor],
              config: AssociationConfig | None = None, progress: bool = True) -> MaskSequence:
    """Automatic masks on every view with one id per object across views (see module docstring)."""
    from scipy.optimize import linear_sum_assignment

    cfg = config or AssociationConfig()
    seq = MaskSequence(list(names), {})
    tracker.start(names, images)
    next_id = 1
    fresh_masks: list[dict[int, torch.Tensor]] = []
    for t, (name, image) in enumerate(tqdm(list(zip(names, images)), desc="associating masks", disable=not progress)):
        size = tuple(image.shape[:2])
        min_area = cfg.min_area_fraction * size[0] * size[1]
        segmenter.set_image(name, image)
        props = [p.mask for p in segmenter.automatic() if p.area >= min_area]
        tracked = {k: m for k, m in tracker.track(t).items() if int(m.sum()) >= min_area} if t > 0 else {}
        if tracked:  # a proposal covering most of two tracked objects is a merge: the tracked masks stand
            props = [p for p in props
                     if sum(float((p & m).sum()) >= cfg.merge_cover * float(m.sum()) for m in tracked.values()) < 2]
        final: dict[int, torch.Tensor] = {}
        matched_props: set[int] = set()
        matched_ids: set[int] = set()
        if props and tracked:
            tids = list(tracked)
            iou = mask_iou_matrix(torch.stack(props), torch.stack([tracked[k] for k in tids]))
            rows, cols = linear_sum_assignment(-iou.numpy())
            for r, c in zip(rows.tolist(), cols.tolist()):
                if iou[r, c] >= cfg.match_iou:
                    final[tids[c]] = props[r]
                    matched_props.add(r)
                    matched_ids.add(tids[c])
        for k, m in tracked.items():
            final.setdefault(k, m)
        covered = torch.zeros(size, dtype=torch.bool)
        for m in final.values():
            covered |= m
        for r, m in sorted(enumerate(props), key=lambda rm: -int(rm[1].sum())):
            if r in matched_props:
                continue
            if float((m & covered).sum()) / max(float(m.sum()), 1.0) < cfg.new_object_max_overlap:
                final[next_id] = m
                covered |= m
                next_id += 1
        id_map = paint_id_map(final, size)
        fresh = {k for k in final if k not in tracked or k in matched_ids}
        fresh_masks.append({k: final[k] for k in fresh})
        tracker.condition(t, {k: id_map == k for k in fresh if bool((id_map == k).any())})
    # second pass: objects without a fresh mask on a view come from the final tracker state
    for t, (name, image) in enumerate(zip(names, images)):
        size = tuple(image.shape[:2])
        min_area = cfg.min_area_fraction * size[0] * size[1]
        final = dict(fresh_masks[t])
        for k, m in tracker.track(t).items():
            if k not in final and int(m.sum()) >= min_area:
                final[k] = m
        # fresh masks are painted last so a tracked fill never covers what the segmenter saw
        id_map = paint_id_map({k: m for k, m in final.items() if k not in fresh_masks[t]}, size)
        for k, m in sorted(fresh_masks[t].items(), key=lambda kv: -int(kv[1].sum())):
            id_map[m] = k
        _record(seq, name, id_map)
    log.info("associated %d views: %d objects", len(names), len(seq.objects))
    return seq


def associate_by_consensus(segmenter: Segmenter, gaussians, cameras: dict, names: list[str],
                           images: list[torch.Tensor], config: AssociationConfig | None = None,
                           consensus: ConsensusConfig | None = None, progress: bool = True) -> MaskSequence:
    """Automatic masks on every view, ids made consistent through the scene's 3DGS by consensus.

    Each view's proposals vote onto the Gaussians (``consensus.view_votes``); the Gaussians'
    co-membership over all views decides the objects (``consensus.consensus_labels``), so a
    mask that merges two objects or splits one on a few views neither fuses them nor creates
    a new id. Gaussians the votes leave unsure take their trusted neighbours' object
    (``masks.fill``), and the labels are rendered into every view. Each view's id map then
    takes, per proposal, the object that the rendered labels give most of its pixels (a
    proposal that also holds at least ``merge_cover`` of another object's rendered pixels
    there is a merge, painted per pixel from the render instead), and
    pixels no proposal covers take the rendered label where the labelled Gaussians' alpha is
    at least 1/2 (objects the segmenter missed on that view).
    """
    cfg = config or AssociationConfig()
    seq = MaskSequence(list(names), {})
    raw = []
    for name, image in tqdm(list(zip(names, images)), desc="automatic masks", disable=not progress, leave=False):
        size = tuple(image.shape[:2])
        segmenter.set_image(name, image)
        props = [p.mask for p in segmenter.automatic() if p.area >= cfg.min_area_fraction * size[0] * size[1]]
        raw.append(paint_id_map(dict(enumerate(props, start=1)), size))
    cams = [cameras[n] for n in names]
    source = FixedGaussians(gaussians)
    votes = view_votes(source, cams, raw, ignore_id=0, band=cfg.band, progress=progress)
    labels, conf, info = consensus_labels(votes, consensus)
    G = info["objects"]
    g = source.gaussians
    dev = g.means.device
    labels = fill_labels(labels.to(dev), conf.to(dev), votes.voted.sum(0).to(dev), g.means, g.rgb_dc.clamp(0, 1), cfg.fill)
    onehot = torch.zeros(len(g), G, dtype=g.means.dtype, device=g.means.device)
    has = labels > 0
    onehot[torch.nonzero(has).flatten(), labels[has] - 1] = 1.0
    for name, cam, ids in zip(names, cams, raw):
        r = rasterize(g.means, g.quats, g.scales, g.opacities, onehot, cam)
        rendered = torch.where(r.image.sum(-1) >= 0.5, r.image.argmax(-1) + 1, torch.zeros_like(ids)).cpu()
        out = torch.zeros_like(ids)
        for k in [int(k) for k in ids.unique() if k != 0]:
            m = ids == k
            objs, counts = rendered[m].unique(return_counts=True)
            keep = objs != 0
            objs, counts = objs[keep], counts[keep]
            if objs.numel() == 0:
                continue
            covers = torch.tensor([float(c) / max(int((rendered == o).sum()), 1)
                                   for o, c in zip(objs.tolist(), counts.tolist())])
            # a merged mask -- the object most of it renders as, and another one it holds at
            # least merge_cover of (the first may be cut short by a split): split it by the render
            others = torch.ones_like(covers, dtype=torch.bool)
            others[counts.argmax()] = False
            if bool((covers[others] >= cfg.merge_cover).any()):
                out[m] = rendered[m]
            else:
                out[m] = objs[counts.argmax()]
        missed = (ids == 0) & (rendered > 0)
        out[missed] = rendered[missed]
        _record(seq, name, out)
    log.info("associated %d views by consensus: %d objects", len(names), G)
    return seq


def propagate_prompt(segmenter: Segmenter | None, tracker: Tracker, names: list[str], images: list[torch.Tensor],
                     first_mask: torch.Tensor, object_id: int = 1, refine: bool = True,
                     config: AssociationConfig | None = None, progress: bool = True) -> MaskSequence:
    """Carry one object's mask from ``names[0]`` along the chain (refined by re-prompting)."""
    cfg = config or AssociationConfig()
    if refine and segmenter is None:
        raise InputError("propagate_prompt: refine=True needs a segmenter")
    if not first_mask.any():
        raise InputError(f"the prompt gave an empty mask on view {names[0]}")
    seq = MaskSequence(list(names), {})
    tracker.start(names, images)
    tracker.condition(0, {object_id: first_mask})
    _record(seq, names[0], first_mask.long() * object_id)
    steps = list(zip(names, images))[1:]
    for t, (name, image) in enumerate(tqdm(steps, desc="propagating prompt", disable=not progress), start=1):
        mask = tracker.track(t).get(object_id)
        if mask is not None and refine:
            points = interior_points(mask, cfg.refine_points)
            if len(points):
                segmenter.set_image(name, image)
                prop = segmenter.from_points(points, torch.ones(len(points), dtype=torch.int64))
                if float(mask_iou_matrix(prop.mask[None], mask[None])[0, 0]) >= cfg.refine_min_iou:
                    mask = prop.mask
        if mask is None:
            mask = torch.zeros(image.shape[:2], dtype=torch.bool)
        if mask.any():
            tracker.condition(t, {object_id: mask})
        _record(seq, name, mask.long() * object_id)
    return seq
