"""The SAM-like mask corruption: each kind of damage does what it says, at its rate, seeded."""

import json

import pytest
import torch

from structgs.data.mask_noise import CLEAN, MaskNoise, corrupt_id_mask, corrupt_masks, view_generator
from structgs.scene.images import load_id_mask, save_id_mask


def _scene_ids() -> torch.Tensor:
    """64x64: ground 1 filling the lower half, three touching objects 2-4 on it, background 0."""
    ids = torch.zeros(64, 64, dtype=torch.int64)
    ids[32:, :] = 1
    ids[20:40, 5:22] = 2
    ids[18:40, 22:40] = 3  # touches 2
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    ids[(yy - 30) ** 2 + (xx - 50) ** 2 < 81] = 4  # touches 3
    return ids


def _overlap(a: torch.Tensor, b: torch.Tensor) -> dict[int, dict[int, int]]:
    """For every id of ``a``: how many of its pixels fall on each id of ``b``."""
    return {int(k): {int(j): int(((a == k) & (b == j)).sum()) for j in b.unique()} for k in a.unique() if k != 0}


def test_clean_noise_is_the_identity():
    ids = _scene_ids()
    out, record = corrupt_id_mask(ids, CLEAN, torch.Generator().manual_seed(0))
    assert torch.equal(out, ids) and record == {"missed": 0, "merged": 0, "split": 0, "parts": 0}


def test_merge_only_joins_touching_masks():
    ids = _scene_ids()
    noise = MaskNoise(merge=1.0, split=0.0, jitter_min=0, jitter_max=0, boundary_drop=0.0, permute=False)
    merged_any = False
    for seed in range(10):
        out, record = corrupt_id_mask(ids, noise, torch.Generator().manual_seed(seed))
        for k, counts in _overlap(ids, out).items():  # every truth mask lands whole in one output mask
            assert sum(c > 0 for j, c in counts.items() if j != 0) == 1, (seed, k, counts)
        for k, counts in _overlap(out, ids).items():  # an output mask is a union of touching truth masks
            parts = [j for j, c in counts.items() if c > 0 and j != 0]
            merged_any |= len(parts) > 1
            if set(parts) == {2, 4}:
                pytest.fail("2 and 4 do not touch, yet were merged directly")
        assert record["merged"] >= 1 and len(out.unique()) < len(ids.unique())
    assert merged_any


def test_split_cuts_every_mask_in_two():
    ids = _scene_ids()
    noise = MaskNoise(merge=0.0, split=1.0, jitter_min=0, jitter_max=0, boundary_drop=0.0, permute=False)
    out, record = corrupt_id_mask(ids, noise, torch.Generator().manual_seed(3))
    assert record["split"] == 4
    for k, counts in _overlap(ids, out).items():
        pieces = [c for j, c in counts.items() if c > 0 and j != 0]
        assert len(pieces) == 2 and min(pieces) >= 1, (k, counts)


def test_parts_and_misses():
    ids = _scene_ids()
    noise = MaskNoise(merge=0.0, split=0.0, parts=1.0, jitter_min=0, jitter_max=0, boundary_drop=0.0, permute=False)
    out, record = corrupt_id_mask(ids, noise, torch.Generator().manual_seed(1))
    assert record["parts"] == 3  # the three objects, never the ground
    assert sum(c > 0 for c in _overlap(ids, out)[1].values()) == 1
    for k in (2, 3, 4):
        assert 2 <= sum(c > 0 for j, c in _overlap(ids, out)[k].items() if j != 0) <= 3
    gone, record = corrupt_id_mask(ids, MaskNoise(miss=1.0, permute=False), torch.Generator().manual_seed(0))
    assert record["missed"] == 4 and not gone.any()


def test_jitter_and_boundary_drop_stay_near_boundaries():
    ids = _scene_ids()
    noise = MaskNoise(merge=0.0, split=0.0, jitter_min=1, jitter_max=2, boundary_drop=0.02, permute=False)
    out, _ = corrupt_id_mask(ids, noise, torch.Generator().manual_seed(2))
    changed = out != ids
    assert changed.any()
    f = ids[None, None].float()
    near = (torch.nn.functional.max_pool2d(f, 13, 1, 6) != -torch.nn.functional.max_pool2d(-f, 13, 1, 6))[0, 0]
    # nothing changes farther from a true boundary than two jitters (a neighbour dilated into a
    # mask that is then eroded, 2 + 2 px) plus the drop band (2 px)
    assert not (changed & ~near).any()
    drop_only = MaskNoise(merge=0.0, split=0.0, jitter_min=0, jitter_max=0, boundary_drop=0.02, permute=False)
    out, _ = corrupt_id_mask(ids, drop_only, torch.Generator().manual_seed(2))
    dropped = (out == 0) & (ids != 0)
    assert abs(int(dropped.sum()) - round(0.02 * int((ids != 0).sum()))) <= 1
    assert not (out[~dropped] != ids[~dropped]).any()


def test_ids_are_permuted_and_views_seeded_independently(tmp_path):
    ids = _scene_ids()
    out, _ = corrupt_id_mask(ids, MaskNoise(merge=0, split=0, jitter_min=0, jitter_max=0, boundary_drop=0),
                             view_generator(0, "train/r_0"))
    mapping = {k: int(out[ids == k].unique()[0]) for k in (1, 2, 3, 4)}
    assert len(set(mapping.values())) == 4 and mapping != {1: 1, 2: 2, 3: 3, 4: 4}
    for name in ("train/r_0", "train/r_1"):
        save_id_mask(ids, tmp_path / "gt" / f"{name}.png")
    a = corrupt_masks(tmp_path / "gt", tmp_path / "a", MaskNoise(), seed=4)
    b = corrupt_masks(tmp_path / "gt", tmp_path / "b", MaskNoise(), seed=4)
    for name in ("train/r_0", "train/r_1"):
        assert torch.equal(load_id_mask(a / f"{name}.png"), load_id_mask(b / f"{name}.png"))
    record = json.loads((a / "noise.json").read_text())
    assert set(record["views"]) == {"train/r_0", "train/r_1"} and record["noise"]["merge"] == 0.1
    with pytest.raises(ValueError, match="overwrite its input"):
        corrupt_masks(tmp_path / "gt", tmp_path / "gt")
    with pytest.raises(ValueError, match="merge must be in"):
        MaskNoise(merge=1.5)
