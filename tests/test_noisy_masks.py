"""Real masks are not ground truth: shaping, segmentation, association and voting on SAM-like
masks, against the same runs on clean masks (ids permuted only); and the one-object masks of
the click flow. The thresholds are the issue's (13): every object within 3 mIoU points of the
clean run and 3D IoU >= 95; the association within one object of the truth with >= 90 % of
the pixels agreeing, and voting on it >= 85 mIoU for every object.

The small scene's masks are corrupted per view at the built-in scene's rates (merges and
splits with p 0.1, 2 % of boundary pixels dropped, ids permuted; seeded) with 1 px boundary
jitter: its views are 64x64, so 1 px is the built-in scene's 1-2 px at 128x128. Measured with
noise seeds 0, 1, 2 (this file uses 0): worst drop 0.6 / 0.9 / 0.6 points, worst 3D IoU 97.3 /
98.0 / 96.8 (`none`) and 99.9 (`overlap`, all three); voting 93.0-99.7 mIoU."""

import numpy as np
import pytest
import torch
from conftest import FAST_SHAPING

from structgs.data.mask_noise import MaskNoise, corrupt_masks
from structgs.edit import WeightEditor, from_pixels
from structgs.edit.voting import segment_by_voting
from structgs.eval.metrics import iou, matched_agreement
from structgs.model import SceneModel
from structgs.pipeline.edit_ops import evaluate_selection, pick_target_pixel
from structgs.pipeline.make_masks import MaskSources, make_masks
from structgs.scene.dataset import load_dataset
from structgs.scene.images import save_id_mask
from structgs.shaping.config import ShapeConfig
from structgs.pipeline.shape import shape_run


@pytest.fixture(scope="module")
def noisy_masks(small_scene_dir, tmp_path_factory):
    return corrupt_masks(small_scene_dir / "masks", tmp_path_factory.mktemp("noisy") / "masks",
                         MaskNoise(jitter_min=1, jitter_max=1), seed=0)


MAX_DROP, MIN_IOU_3D, MIN_VOTING = 3.0, 95.0, 85.0  # the thresholds


@pytest.fixture(scope="module")
def clicks(small_scene_dir):
    ds = load_dataset(small_scene_dir)
    labels = np.load(small_scene_dir / "labels.npy")
    return {int(k): pick_target_pixel(ds, small_scene_dir / "masks", int(k)) for k in np.unique(labels)}


def one_click(run, scene_dir, clicks) -> dict[int, dict]:
    """Test mIoU and 3D IoU (percent) of every object segmented from its one click."""
    model = SceneModel.from_pretrained(run)
    ds = load_dataset(scene_dir)
    labels = torch.from_numpy(np.load(scene_dir / "labels.npy"))
    editor = WeightEditor(model)
    out = {}
    for k, (view, pixel) in clicks.items():
        sel = editor.segment(from_pixels(model, ds.camera(view), [pixel]))
        out[k] = {"miou": evaluate_selection(model, ds, scene_dir / "masks", "test", k, sel)["miou"],
                  "iou_3d": 100 * iou(sel, labels == k)}
    return out


@pytest.mark.parametrize("association", ["none", "overlap"])
def test_noisy_masks_segment_nearly_as_well_as_clean_ones(association, noisy_masks, fitted_small_run,
                                                          small_scene_dir, clicks, request, tmp_path):
    clean_run, clean_report = request.getfixturevalue(f"{association}_clean")
    report = shape_run(fitted_small_run, noisy_masks, tmp_path / "noisy", ShapeConfig(association=association,
                       **FAST_SHAPING), device="cpu", progress=False)
    noisy = one_click(tmp_path / "noisy", small_scene_dir, clicks)
    clean = one_click(clean_run, small_scene_dir, clicks)
    for k in clicks:  # every object, the ground included
        assert clean[k]["miou"] - noisy[k]["miou"] <= MAX_DROP, (k, noisy, clean)
        assert noisy[k]["iou_3d"] >= MIN_IOU_3D, (k, noisy[k], clean[k])
    # the report says how noisy the masks looked; clean masks look clean
    noise, clean_noise = report["lifting"]["noise"], clean_report["lifting"]["noise"]
    assert noise["merges_per_view"] > 0.2 and noise["splits_per_view"] > 0.05
    assert clean_noise["merges_per_view"] <= 0.1 and clean_noise["splits_per_view"] <= 0.1
    assert clean_noise["confidence_mean"] > noise["confidence_mean"] + 0.1
    if association == "overlap":
        assert report["lifting"]["objects"] == len(clicks)


def test_masks_association_by_consensus_and_voting(noisy_masks, small_scene_dir, fitted_small_run, clicks, tmp_path):
    ds = load_dataset(small_scene_dir)
    cams = ds.split("train")
    out = tmp_path / "assoc"
    summary = make_masks(small_scene_dir, out, MaskSources(oracle_masks=noisy_masks, ply=small_scene_dir / "gaussians.ply"),
                         progress=False)
    assert summary["ids"] == "consensus" and abs(len(summary["objects"]) - len(clicks)) <= 1, summary["objects"]
    truth = small_scene_dir / "masks"
    agree = matched_agreement(torch.cat([ds.mask(c, out).flatten() for c in cams]),
                              torch.cat([ds.mask(c, truth).flatten() for c in cams]))
    assert agree >= 0.9
    model = SceneModel.from_pretrained(fitted_small_run)
    mious = {}
    for k, (view, (x, y)) in clicks.items():
        tid = int(ds.mask(ds.camera(view), out)[y, x])
        sel = segment_by_voting(model, cams, [ds.mask(c, out) == tid for c in cams])
        mious[k] = evaluate_selection(model, ds, truth, "test", k, sel)["miou"]
    assert min(mious.values()) >= MIN_VOTING, mious
    # the chain (tracker) association on the same masks: splits and merges cost it ids and pixels
    # (measured on noise seeds 0 / 1 / 2: 8 / 6 / 9 objects, 85.5 / 92.0 / 90.2 % agreeing; the
    # consensus 4 objects, 98.0 / 97.7 / 97.6 %)
    chain = make_masks(small_scene_dir, tmp_path / "chain", MaskSources(oracle_masks=noisy_masks,
                       ply=small_scene_dir / "gaussians.ply"), ids="chain", progress=False)
    chain_agree = matched_agreement(torch.cat([ds.mask(c, tmp_path / "chain").flatten() for c in cams]),
                                    torch.cat([ds.mask(c, truth).flatten() for c in cams]))
    assert chain["ids"] == "chain" and agree - chain_agree >= 0.03, (agree, chain_agree)
    with pytest.raises(ValueError, match="--ids consensus needs --ply"):
        make_masks(small_scene_dir, tmp_path / "x", MaskSources(oracle_masks=noisy_masks, tracker="gaussians"),
                   ids="consensus", progress=False)


def test_one_object_masks_use_the_rest_as_negatives(fitted_small_run, small_scene_dir, clicks, tmp_path):
    ds = load_dataset(small_scene_dir)
    target = max(k for k in clicks if k != 1)
    for cam in ds.split("train"):  # the click flow: the object as id 1, everything else 0
        save_id_mask((ds.mask(cam, small_scene_dir / "masks") == target).long(), tmp_path / "one" / f"{cam.name}.png")
    report = shape_run(fitted_small_run, tmp_path / "one", tmp_path / "s", ShapeConfig(**FAST_SHAPING), device="cpu",
                       progress=False)
    assert report["lifting"]["rest_label"] and report["lifting"]["num_ids"] == 2  # the object and the rest
    result = one_click(tmp_path / "s", small_scene_dir, {target: clicks[target]})
    assert result[target]["iou_3d"] >= 95, result
