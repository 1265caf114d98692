"""The editing session the viewer calls (pick, segment, edit, compare, export), without a browser,
on the small shaped scene against its ground-truth labels."""

import numpy as np
import pytest
import torch

from structgs.edit.selection import EmptySelectionError, top_gaussians
from structgs.edit.session import EditSession, pixel_ray
from structgs.model import SceneModel
from structgs.pipeline.edit_ops import pick_target_pixel
from structgs.scene import load_dataset
from structgs.scene.ply import read_ply, write_ply
from structgs.utils.errors import InputError

OBJECTS = (2, 3, 4)  # label 1 is the ground


def iou3d(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


@pytest.fixture(scope="module")
def scene(tracked, small_scene_dir):
    model = SceneModel.from_pretrained(tracked[0])
    ds = load_dataset(small_scene_dir, masks_dir=small_scene_dir / "masks")
    labels = torch.from_numpy(np.load(small_scene_dir / "labels.npy"))
    return model, ds, labels


@pytest.fixture
def session(scene):
    model = scene[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    yield EditSession(model)
    model.load_state_dict(state)


def test_a_pick_is_the_pixels_top_gaussian_and_the_background_is_none(scene, session):
    model, ds, _ = scene
    cam = ds.split("test")[0]
    top = top_gaussians(model, cam)
    ys, xs = torch.nonzero(top >= 0, as_tuple=True)
    for k in range(0, len(ys), max(1, len(ys) // 25)):
        x, y = int(xs[k]), int(ys[k])
        pick = session.pick_pixel(cam, x, y)
        assert pick.gaussian == int(top[y, x]) and pick.weight > 0 and pick.depth > 0, (x, y)
    ys, xs = torch.nonzero(top < 0, as_tuple=True)
    assert len(ys) > 0 and session.pick_pixel(cam, int(xs[0]), int(ys[0])) is None
    with pytest.raises(InputError, match="outside view"):
        session.pick_pixel(cam, cam.width, 0)
    with pytest.raises(InputError, match="non-zero direction"):
        session.pick_ray([0, 0, 0], [0, 0, 0])
    with pytest.raises(InputError, match=r"3-vectors, got shapes \(2,\) and \(3,\)"):
        session.pick_ray([0, 0], [0, 0, 1])


def test_a_ray_picks_what_the_view_shows_at_its_pixel(scene, session):
    """The viewer's camera is not a dataset camera: a pick is a one-pixel camera on the click's
    ray. Through pixel centres of a test view it picks the object the view's own top Gaussian
    belongs to (the two cameras project a Gaussian's footprint slightly differently, so the top
    Gaussian itself may differ where two nearly tie)."""
    model, ds, labels = scene
    cam = ds.split("test")[1]
    top = top_gaussians(model, cam)
    ys, xs = torch.nonzero(top >= 0, as_tuple=True)
    agree = same_gaussian = n = 0
    for k in range(0, len(ys), max(1, len(ys) // 60)):
        x, y = int(xs[k]), int(ys[k])
        origin, direction = pixel_ray(cam, x + 0.5, y + 0.5)
        pick = session.pick_ray(origin, direction, focal=float(cam.K[1, 1]))
        n += 1
        if pick is not None:
            agree += int(labels[pick.gaussian] == labels[top[y, x]])
            same_gaussian += int(pick.gaussian == int(top[y, x]))
            assert pick.depth > 0
    assert agree >= 0.95 * n and same_gaussian >= 0.6 * n, (agree, same_gaussian, n)


def test_one_click_selects_the_object_and_shift_click_adds_another(scene, session):
    model, ds, labels = scene
    picks = {}
    for k in OBJECTS:
        view, (x, y) = pick_target_pixel(ds, ds.masks_dir, k)
        pick = session.pick_pixel(ds.camera(view), x, y)
        assert int(labels[pick.gaussian]) == k
        summary = session.select(pick.gaussian)
        assert iou3d(session.selection, labels == k) >= 0.95, k
        assert summary.count == int(session.selection.sum()) and summary.seeds == (pick.gaussian,)
        picks[k] = pick.gaussian
    session.select(picks[2])
    summary = session.select(picks[3], add=True)
    assert iou3d(session.selection, (labels == 2) | (labels == 3)) >= 0.95
    assert summary.seeds == (picks[2], picks[3]) and "2 clicks" in summary.describe()
    # the threshold re-cuts the kept scores: no new query, monotone in the threshold
    scores = session.scores.clone()
    counts = [session.set_threshold(t).count for t in (0.1, 0.5, 0.9)]
    assert counts[0] >= counts[1] >= counts[2] >= 2 and torch.equal(session.scores, scores)
    with pytest.raises(InputError, match="threshold"):
        session.set_threshold(1.5)
    with pytest.raises(InputError, match=r"Gaussian id must be in \[0, 6000\), got 6000"):
        session.select(model.num_gaussians)
    session.clear()
    assert not session.selection.any() and session.summary().describe() == "nothing selected"


def test_edits_through_the_session_undo_bit_exactly(scene, session):
    model, ds, labels = scene
    with pytest.raises(EmptySelectionError, match="click an object first"):
        session.remove()
    with pytest.raises(EmptySelectionError, match="click an object first"):
        session.selected_gaussians()
    view, (x, y) = pick_target_pixel(ds, ds.masks_dir, 3)
    session.select(session.pick_pixel(ds.camera(view), x, y).gaussian)
    state = lambda: {k: v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    before = state()
    obj = labels == 3
    session.remove()
    removed = state()
    op = model.decode().opacities.detach()
    session.undo()
    assert same(state(), before) and session.can_redo
    op0 = model.decode().opacities.detach()
    assert float(op[obj].mean()) < 0.05 * float(op0[obj].mean())
    assert float((op[~obj] - op0[~obj]).abs().mean()) < 0.05 * float(op0[obj].mean())
    session.redo()
    assert same(state(), removed)
    session.recolor([0.0, 1.0, 0.0])
    session.move([0.1, 0.0, 0.0])
    session.undo()
    session.undo()
    assert same(state(), removed)
    session.reset()
    assert same(state(), before) and not session.can_undo


def test_exports_hold_the_selection_and_drop_what_was_removed(scene, session, tmp_path):
    model, ds, labels = scene
    view, (x, y) = pick_target_pixel(ds, ds.masks_dir, 4)
    session.select(session.pick_pixel(ds.camera(view), x, y).gaussian)
    sel = session.selection
    g = session.selected_gaussians()
    assert len(g) == int(sel.sum())
    path = write_ply(g, tmp_path / "object.ply")
    back = read_ply(path)
    assert torch.equal(back.means, g.means) and torch.equal(back.opacity_logits, g.opacity_logits)
    assert len(session.scene_gaussians()) == model.num_gaussians  # nothing removed yet
    session.remove()
    removed = session.removed()
    assert int((removed & sel).sum()) >= 0.95 * int(sel.sum()) and int((removed & ~sel).sum()) <= 0.01 * int(sel.sum())
    assert len(session.scene_gaussians()) == model.num_gaussians - int(removed.sum())
    assert len(session.scene_gaussians(drop_removed=False)) == model.num_gaussians


def test_compare_votes_for_the_clicked_object(scene, session, small_scene_dir):
    model, ds, labels = scene
    cams = ds.split("train")
    masks = [ds.mask(c) for c in cams]
    view, (x, y) = pick_target_pixel(ds, ds.masks_dir, 2)
    session.select(session.pick_pixel(ds.camera(view), x, y).gaussian)
    seen = []
    cmp = session.compare(cams, masks, on_view=lambda d, n: seen.append((d, n)))
    assert cmp.target == 2
    assert seen[-1] == (len(cams), len(cams)) and len(seen) == len(cams)
    assert iou3d(cmp.voting, labels == 2) >= 0.8
    assert cmp.iou == pytest.approx(iou3d(cmp.voting, session.selection))
    with pytest.raises(InputError, match="one id mask per view"):
        session.compare(cams, masks[:-1])


def test_an_unshaped_model_is_refused(fitted_small_run):
    with pytest.raises(InputError, match="never shaped"):
        EditSession(SceneModel.from_pretrained(fitted_small_run))


def test_pixel_ray_goes_through_the_pixel(scene):
    _, ds, _ = scene
    cam = ds.split("train")[0]
    origin, d = pixel_ray(cam, 10.5, 20.5)
    p = origin + 3.0 * d
    uvw = cam.K @ (cam.world_to_camera[:3, :3] @ p + cam.world_to_camera[:3, 3])
    assert torch.allclose(uvw[:2] / uvw[2], torch.tensor([10.5, 20.5]), atol=1e-3)
