"""Mask sources: automatic-mask helpers, association and prompted propagation (oracle segmenter
on the small scene), and the real transformers classes with tiny random-weight checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from structgs.data.synthetic import shuffle_mask_ids
from structgs.masks import (AutoMaskConfig, GaussianTracker, OracleSegmenter, associate, interior_points,
                            mask_nms, order_views, point_grid, stability_score)
from structgs.eval.metrics import iou, matched_agreement
from structgs.pipeline.edit_ops import pick_target_pixel
from structgs.pipeline.make_masks import MaskSources, make_masks
from structgs.scene.dataset import load_dataset
from structgs.scene.ply import read_ply


def _agreement(ds, pred_dir: Path, truth_dir: Path, cams) -> float:
    return matched_agreement(torch.cat([ds.mask(c, pred_dir).flatten() for c in cams]),
                             torch.cat([ds.mask(c, truth_dir).flatten() for c in cams]))


@pytest.fixture(scope="module")
def shuffled(small_scene_dir, tmp_path_factory):
    return shuffle_mask_ids(small_scene_dir / "masks", tmp_path_factory.mktemp("shuffled"), seed=1)


def test_point_grid_stability_and_nms():
    g = point_grid(4, 40, 80)
    assert g.shape == (16, 2) and torch.allclose(g[0], torch.tensor([10.0, 5.0])) and g[:, 0].max() == 70
    hard = torch.full((1, 8, 8), -10.0)
    hard[0, 2:6, 2:6] = 10.0
    ramp = torch.linspace(-3, 3, 8).expand(8, 8)[None]
    assert stability_score(hard, 0.0, 1.0).item() == 1.0
    assert 0.3 < stability_score(ramp, 0.0, 1.0).item() < 0.8
    a = torch.zeros(3, 10, 10, dtype=torch.bool)
    a[0, :5], a[1, :5, :9], a[2, 6:] = True, True, True  # 0 and 1 nearly duplicate, 2 disjoint
    keep = mask_nms(a, torch.tensor([0.8, 0.9, 0.5]), 0.7)
    assert keep.tolist() == [1, 2]


def test_interior_points_are_deep_inside_and_spread():
    m = torch.zeros(30, 60, dtype=torch.bool)
    m[5:25, 5:55] = True
    pts = interior_points(m, 3)
    assert pts.shape == (3, 2)
    x, y = pts[0].long().tolist()
    assert 10 <= y <= 20 and 10 <= x <= 50  # the deepest pixel is far from the boundary
    assert all(m[int(py), int(px)] for px, py in pts.tolist())
    assert torch.cdist(pts, pts)[~torch.eye(3, dtype=torch.bool)].min() > 5


def test_views_are_ordered_as_a_walk_around_the_ring(small_scene_dir):
    cams = load_dataset(small_scene_dir).split("train")  # 12 views, 30 degrees apart on a ring
    order = order_views(cams, start=5)
    assert order[0] == 5 and sorted(order) == list(range(12))
    centres = torch.stack([cams[i].center for i in order])
    steps = (centres[1:] - centres[:-1]).norm(dim=1)
    neighbour = (cams[0].center - cams[1].center).norm()
    assert int((steps > 1.5 * neighbour).sum()) <= 1  # one jump back at most, when the walk turns round


def test_association_recovers_shuffled_ids_with_missed_objects(small_scene_dir, shuffled, tmp_path):
    ds = load_dataset(small_scene_dir)
    cams = ds.all_cameras
    seg = OracleSegmenter.from_dataset(ds, shuffled, drop_probability=0.25, seed=5)
    tracker = GaussianTracker(read_ply(small_scene_dir / "gaussians.ply"), {c.name: c for c in cams})
    order = [cams[i] for i in order_views(cams)]
    seq = associate(seg, tracker, [c.name for c in order], [ds.image(c) for c in order], progress=False)
    assert len(seq.objects) == 4  # ground + 3 objects, no duplicates despite a quarter of the masks missing
    out = tmp_path / "assoc_out"
    from structgs.scene.images import save_id_mask

    for name, id_map in seq.id_maps.items():
        save_id_mask(id_map, out / f"{name}.png")
    assert _agreement(ds, out, small_scene_dir / "masks", cams) >= 0.95


@pytest.mark.parametrize("target", [2, 3, 4])
def test_one_click_propagates_to_test_views(small_scene_dir, shuffled, tmp_path, target):
    ds = load_dataset(small_scene_dir)
    view, pixel = pick_target_pixel(ds, small_scene_dir / "masks", target)
    summary = make_masks(small_scene_dir, tmp_path / "m", MaskSources(oracle_masks=shuffled,
                         ply=small_scene_dir / "gaussians.ply"), split="all", view=view, pixels=[pixel],
                         progress=False)
    assert summary["mode"] == "prompt" and list(summary["objects"]) == ["1"]
    ious = []
    for c in ds.split("test"):
        ious.append(iou(ds.mask(c, tmp_path / "m") == 1, ds.mask(c, small_scene_dir / "masks") == target))
    assert sum(ious) / len(ious) >= 0.9, ious


def test_masks_cli_text_prompt_and_inputs_untouched(small_scene_dir, shuffled, tmp_path):
    before = {p: p.read_bytes() for p in shuffled.rglob("*.png")}
    r = subprocess.run([sys.executable, "-m", "structgs.cli", "masks", str(small_scene_dir), "--out",
                        str(tmp_path / "cone"), "--oracle-masks", str(shuffled), "--ply",
                        str(small_scene_dir / "gaussians.ply"), "--scene-json", str(small_scene_dir / "scene.json"),
                        "--text", "the cone"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "cone" / "masks.json").read_text())
    assert meta["prompt"]["text"] == "the cone" and len(meta["order"]) == 12
    ds = load_dataset(small_scene_dir)
    cone = [o["id"] for o in json.loads((small_scene_dir / "scene.json").read_text())["objects"]
            if o["shape"] == "cone"][0]
    cams = ds.split("train")
    inter = sum(int(((ds.mask(c, tmp_path / "cone") == 1) & (ds.mask(c, small_scene_dir / "masks") == cone)).sum()) for c in cams)
    union = sum(int(((ds.mask(c, tmp_path / "cone") == 1) | (ds.mask(c, small_scene_dir / "masks") == cone)).sum()) for c in cams)
    assert inter / union >= 0.9
    assert {p: p.read_bytes() for p in shuffled.rglob("*.png")} == before
    r = subprocess.run([sys.executable, "-m", "structgs.cli", "masks", str(small_scene_dir), "--out",
                        str(small_scene_dir / "masks"), "--oracle-masks", str(shuffled)], capture_output=True, text=True)
    assert r.returncode == 2 and "also an input" in r.stderr
    keep = tmp_path / "photos"  # an unrelated directory is never replaced by the masks output
    keep.mkdir()
    (keep / "a.jpg").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "structgs.cli", "masks", str(small_scene_dir), "--out", str(keep),
                        "--oracle-masks", str(shuffled), "--ply", str(small_scene_dir / "gaussians.ply")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a structgs masks directory" in r.stderr and (keep / "a.jpg").read_bytes() == b"x"
    r = subprocess.run([sys.executable, "-m", "structgs.cli", "masks", str(small_scene_dir), "--out",
                        str(tmp_path / "cone"), "--oracle-masks", str(tmp_path / "nowhere"), "--ply",
                        str(small_scene_dir / "gaussians.ply")], capture_output=True, text=True)
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr


# ---- the real transformers classes, tiny random weights -------------------------------------

@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_models import save_tiny_grounding_dino, save_tiny_sam2, save_tiny_sam2_video

    root = tmp_path_factory.mktemp("weights")
    return {"sam2": save_tiny_sam2_video(root / "sam2"), "sam2_image_only": save_tiny_sam2(root / "sam2_image"),
            "gdino": save_tiny_grounding_dino(root / "gdino")}


def test_missing_or_partial_weights_are_clear_errors(tiny_weights, tmp_path):
    from structgs.masks.sam2 import Sam2Segmenter, Sam2VideoTracker

    with pytest.raises(FileNotFoundError, match="facebook/sam2.1-hiera-large"):
        Sam2Segmenter.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="lacks .* weights of Sam2VideoModel"):
        Sam2VideoTracker.from_pretrained(tiny_weights["sam2_image_only"])


def test_sam2_automatic_masks_and_video_association_run(small_scene_dir, tiny_weights, tmp_path):
    auto = AutoMaskConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, nms_iou_thresh=0.5)
    summary = make_masks(small_scene_dir, tmp_path / "auto", MaskSources(weights=tiny_weights["sam2"], device="cpu"),
                         auto=auto, progress=False)
    assert summary["source"] == "sam2" and summary["tracker"] == "Sam2VideoTracker"
    ds = load_dataset(small_scene_dir)
    seen: dict[int, int] = {}
    for c in ds.split("train"):
        m = ds.mask(c, tmp_path / "auto")  # size checked against the view
        for i in m.unique().tolist():
            if i:
                seen[i] = seen.get(i, 0) + 1
    assert seen, "random weights still produce masks with thresholds at 0"
    objects = {int(k): v for k, v in summary["objects"].items()}
    assert {k: v["views"] for k, v in objects.items()} == seen  # bookkeeping matches the PNGs
    assert sorted(objects) == list(range(1, len(objects) + 1))  # ids handed out in order


def test_sam2_prompts_text_and_segment_end_to_end(small_scene_dir, fitted_small_run, tiny_weights, tmp_path):
    from structgs.model import SceneModel
    from structgs.pipeline.edit_ops import SelectionSpec, select

    src = MaskSources(weights=tiny_weights["sam2"], detector_weights=tiny_weights["gdino"], device="cpu")
    s = make_masks(small_scene_dir, tmp_path / "click", src, view="train/r_0", pixels=[(30, 30)], progress=False)
    assert s["prompt"]["pixels"] == [[30, 30]] and s["order"][0] == "train/r_0"
    s = make_masks(small_scene_dir, tmp_path / "text", src, text="red apple", progress=False)
    assert len(s["prompt"]["box"]) == 4 and 0.0 <= s["prompt"]["box_score"] <= 1.0
    ds = load_dataset(small_scene_dir)
    assert all(set(ds.mask(c, tmp_path / "text").unique().tolist()) <= {0, 1} for c in ds.split("train"))
    model = SceneModel.from_pretrained(fitted_small_run)
    sel = select(model, ds, SelectionSpec(text="red apple", sources=src), expand=False)
    assert sel.dtype == torch.bool and sel.shape == (model.num_gaussians,)


def test_shaping_lifts_associated_masks(small_scene_dir, fitted_small_run, shuffled, tmp_path):
    """`structgs masks` output is what shaping consumes: lifting it labels Gaussians like the truth."""
    import numpy as np

    from structgs.model import SceneModel
    from structgs.shaping.lifting import lift_masks, matched_accuracy

    make_masks(small_scene_dir, tmp_path / "m", MaskSources(oracle_masks=shuffled, ply=small_scene_dir / "gaussians.ply"),
               progress=False)
    model = SceneModel.from_pretrained(fitted_small_run)
    lift = lift_masks(model, load_dataset(small_scene_dir), tmp_path / "m", "tracked", progress=False)
    truth = torch.from_numpy(np.load(small_scene_dir / "labels.npy"))
    assert lift.coverage > 0.6 and matched_accuracy(lift.labels, truth) >= 0.95


def test_segment_cli_text_and_click_with_weights(tracked, tiny_weights, tmp_path):
    import numpy as np

    base = [sys.executable, "-m", "structgs.cli", "segment", str(tracked[0]), "--weights",
            str(tiny_weights["sam2"]), "--device", "cpu"]
    r = subprocess.run(base + ["--detector-weights", str(tiny_weights["gdino"]), "--text", "red apple", "--out",
                               str(tmp_path / "text.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["--view", "train/r_0", "--pixel", "30", "30", "--out", str(tmp_path / "click.npy")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for f in ("text.npy", "click.npy"):
        sel = np.load(tmp_path / f)
        assert sel.dtype == bool and sel.any()
    r = subprocess.run(base[:-4] + ["--text", "red apple", "--out", str(tmp_path / "x.npy")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--text needs --weights" in r.stderr
