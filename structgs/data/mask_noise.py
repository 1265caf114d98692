"""SAM-like corruption of ground-truth id masks, to test everything downstream on realistic masks.

Real automatic masks (SAM, SAM 2) are not ground truth: touching objects come out as one
mask, one object comes out as two (or as its parts), boundaries are off by a pixel or two,
some boundary pixels belong to no mask, objects are missed, and the ids of one view mean
nothing in the next. ``corrupt_id_mask`` applies all of these to one view's ground-truth id
image, independently per view, with every probability a parameter (``MaskNoise``) so that a
benchmark can sweep them. ``corrupt_masks`` does it for a whole masks directory and records
what it did per view (``noise.json``), so estimates of the damage can be checked against it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from structgs.scene.images import load_id_mask, save_id_mask
from structgs.utils.io import write_json
from structgs.utils.labels import patch_majority, upsample_labels
from structgs.utils.errors import InputError, MissingFileError


@dataclass(frozen=True)
class MaskNoise:
    """Per-view corruption probabilities and jitter (defaults: the SAM-like rates of issue 13)."""

    merge: float = 0.1
    """Probability that a mask is merged with one touching mask (the ground included)."""
    split: float = 0.1
    """Probability that a mask (the ground included) is cut in two by a random line near its centroid."""
    parts: float = 0.0
    """Probability that an object (not the ground) comes out as 2-3 part masks (bands across it)."""
    miss: float = 0.0
    """Probability that a mask is missed (its pixels become 0, "no object")."""
    jitter_min: int = 1
    """Smallest boundary shift in pixels (each mask is dilated or eroded by a random amount)."""
    jitter_max: int = 2
    """Largest boundary shift in pixels (0 with jitter_min 0: boundaries untouched)."""
    boundary_drop: float = 0.02
    """Fraction of mask pixels, taken near boundaries, set to 0."""
    permute: bool = True
    """Give every mask of a view a random id (ids mean nothing across views)."""
    ground_id: int = 1
    """Id of the ground in the input masks (never split into parts)."""

    def __post_init__(self) -> None:
        for name in ("merge", "split", "parts", "miss", "boundary_drop"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"mask noise: {name} must be in [0, 1], got {v}")
        if not 0 <= self.jitter_min <= self.jitter_max:
            raise InputError(f"mask noise: need 0 <= jitter_min <= jitter_max, got {self.jitter_min}, {self.jitter_max}")


CLEAN = MaskNoise(merge=0.0, split=0.0, jitter_min=0, jitter_max=0, boundary_drop=0.0, permute=False)


def _dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    if r <= 0:
        return mask
    return F.max_pool2d(mask.float()[None, None], 2 * r + 1, 1, r)[0, 0] > 0.5


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    return ~_dilate(~mask, r)


def _rand(g: torch.Generator) -> float:
    return float(torch.rand(1, generator=g))


def _line_cut(mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The pixels of ``mask`` on one side of a random line through a point near its centroid."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    spread = math.sqrt(ys.numel()) * 0.15
    cy, cx = cy + spread * float(torch.randn(1, generator=g)), cx + spread * float(torch.randn(1, generator=g))
    theta = 2 * math.pi * _rand(g)
    yy, xx = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    side = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta) > 0
    return mask & side


def _bands(mask: torch.Tensor, n: int, g: torch.Generator) -> list[torch.Tensor]:
    """``mask`` cut into ``n`` parts of equal area by parallel lines of a random direction."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    theta = 2 * math.pi * _rand(g)
    proj = xs.float() * math.cos(theta) + ys.float() * math.sin(theta)
    edges = torch.quantile(proj, torch.linspace(0, 1, n + 1)[1:-1])
    which = torch.bucketize(proj, edges)
    parts = []
    for k in range(n):
        m = torch.zeros_like(mask)
        m[ys[which == k], xs[which == k]] = True
        parts.append(m)
    return parts


def corrupt_id_mask(ids: torch.Tensor, noise: MaskNoise, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One view's ground-truth (H, W) id image -> a SAM-like id image and what was done to it.

    Order: miss, merge, split and parts (on the masks as they are then), boundary jitter
    (each mask dilated or eroded, in random order, so dilations take pixels from neighbours),
    boundary pixels dropped, ids permuted. Id 0 is "no object" throughout.
    """
    out = ids.clone().long()
    record = {"missed": 0, "merged": 0, "split": 0, "parts": 0}
    present = [int(k) for k in out.unique() if k != 0]
    for k in present:
        if _rand(g) < noise.miss:
            out[out == k] = 0
            record["missed"] += 1
    next_id = int(out.max()) + 1
    for k in [int(k) for k in out.unique() if k != 0]:
        m = out == k
        if not m.any() or _rand(g) >= noise.merge:
            continue
        ring = _dilate(m, 1) & ~m
        touching = [int(j) for j in out[ring].unique() if j != 0 and j != k]
        if touching:
            j = touching[int(torch.randint(len(touching), (1,), generator=g))]
            out[out == j] = k
            record["merged"] += 1
    for k in [int(k) for k in out.unique() if k != 0]:
        m = out == k
        if _rand(g) < noise.split and m.sum() >= 8:
            half = _line_cut(m, g)
            if half.any() and (m & ~half).any():
                out[half] = next_id
                next_id += 1
                record["split"] += 1
        elif k != noise.ground_id and _rand(g) < noise.parts and m.sum() >= 12:
            for part in _bands(m, 2 + int(_rand(g) < 0.5), g)[1:]:
                out[part] = next_id
                next_id += 1
            record["parts"] += 1
    if noise.jitter_max > 0:
        order = [int(k) for k in out.unique() if k != 0]
        for i in torch.randperm(len(order), generator=g).tolist():
            k = order[i]
            r = int(torch.randint(noise.jitter_min, noise.jitter_max + 1, (1,), generator=g))
            m = out == k
            if _rand(g) < 0.5:
                out[_dilate(m, r) & ~m] = k
            else:
                out[m & ~_erode(m, r)] = 0
    if noise.boundary_drop > 0:
        f = out[None, None].float()
        edge = (F.max_pool2d(f, 5, 1, 2) != -F.max_pool2d(-f, 5, 1, 2))[0, 0] & (out != 0)  # within 2 px of a change
        n_drop = int(round(noise.boundary_drop * int((out != 0).sum())))
        cand = torch.nonzero(edge.flatten()).flatten()
        if n_drop > 0 and cand.numel() > 0:
            out.view(-1)[cand[torch.randperm(cand.numel(), generator=g)[:n_drop]]] = 0
    if noise.permute:
        keys = [int(k) for k in out.unique() if k != 0]
        new = (torch.randperm(254, generator=g)[: len(keys)] + 1).tolist()
        permuted = torch.zeros_like(out)
        for k, nk in zip(keys, new):
            permuted[out == k] = nk
        out = permuted
    return out, record


def view_generator(seed: int, name: str) -> torch.Generator:
    """A generator per (seed, view name): a view's corruption does not depend on the others."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def corrupt_masks(masks_dir: str | Path, out_dir: str | Path, noise: MaskNoise = MaskNoise(), seed: int = 0,
                  pattern: str = "**/*.png") -> Path:
    """Corrupt every mask under ``masks_dir`` matching ``pattern`` into ``out_dir`` (same names),
    and write ``out_dir/noise.json`` (the noise parameters and what was done to each view)."""
    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    if out_dir.resolve() == masks_dir.resolve():
        raise InputError(f"{out_dir}: corrupt_masks would overwrite its input masks")
    files = sorted(masks_dir.glob(pattern))
    if not files:
        raise MissingFileError(f"{masks_dir}: no mask PNGs matching {pattern}")
    views = {}
    for f in files:
        name = str(f.relative_to(masks_dir).with_suffix(""))
        noisy, record = corrupt_id_mask(load_id_mask(f), noise, view_generator(seed, name))
        save_id_mask(noisy, out_dir / f.relative_to(masks_dir))
        views[name] = record
    write_json(out_dir / "noise.json", {"noise": asdict(noise), "seed": seed, "views": views})
    return out_dir


def corrupt_patch_labels(label_map: torch.Tensor, rate: float, num_labels: int, patch: int,
                         g: torch.Generator) -> torch.Tensor:
    """A label map as a noisy patch-level transfer gives it (affordance transfer's kNN on patch
    features): labels are per ``patch`` x ``patch`` cell (its majority), and ``rate`` of the
    cells take another label at random (0, "none", included). Returns (H, W) labels."""
    if not 0 <= rate <= 1:
        raise InputError(f"rate must be in [0, 1], got {rate}")
    h, w = max(1, label_map.shape[0] // patch), max(1, label_map.shape[1] // patch)
    cells = patch_majority(label_map, h, w)
    flip = torch.rand(h, w, generator=g) < rate
    other = (cells + torch.randint(1, num_labels, (h, w), generator=g)) % num_labels
    return upsample_labels(torch.where(flip, other, cells), label_map.shape[0], label_map.shape[1])
