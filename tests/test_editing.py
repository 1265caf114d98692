"""Shaped segmentation and edits on the small shaped scene (real thresholds, measured with margin)."""

import numpy as np
import pytest
import torch

from structgs.edit import WeightEditor, from_pixels
from structgs.model import SceneModel
from structgs.pipeline.edit_ops import evaluate_selection, pick_target_pixel
from structgs.scene import load_dataset

REMOVE_LEAK = 0.05  # the others' mean |opacity change| / the selection's (issue target 0.02 on the built-in scene)
MOVE_LEAK = 0.03
# the moved selection's mean distance from its mean offset / the request, worst of three moves.
# Measured on this 300-step scene per object (2, 3, 4): 0.067 / 0.045 / 0.001 with Eq. 9's
# best-pixel lifting, 0.008 / 0.121 / 0.001 with multi-view votes (a few pool-less Gaussians of
# one object decide it); 0.004-0.017 on the built-in scene at 800 steps, even from SAM-like masks.
MOVE_SPREAD = 0.15


@pytest.fixture(scope="module")
def shaped(tracked, small_scene_dir):
    """The session's shaped run (conftest's ``tracked``: 300 steps on the ground-truth masks)."""
    out = tracked[0]
    model = SceneModel.from_pretrained(out)
    ds = load_dataset(small_scene_dir, masks_dir=small_scene_dir / "masks")
    labels = torch.from_numpy(np.load(small_scene_dir / "labels.npy"))
    return out, model, ds, labels


@pytest.fixture(autouse=True)
def _restore_model(shaped):
    """Every test starts from the shaped weights, even after a failed test left edits applied."""
    model = shaped[1]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    yield
    model.load_state_dict(state)


def test_segmentation_from_one_pixel(shaped):
    _, model, ds, labels = shaped
    ed = WeightEditor(model)
    for k in (2, 3, 4):
        view, pixel = pick_target_pixel(ds, ds.masks_dir, k)
        seg = ed.segment(from_pixels(model, ds.camera(view), [pixel]))
        res = evaluate_selection(model, ds, ds.masks_dir, "test", k, seg)
        assert res["miou"] > 85, (k, res)


def test_scores_match_explicit_jacobians(shaped):
    """<J_i, Jbar> / (|J_i||Jbar|) computed without Jacobians equals the explicit computation."""
    _, model, _, labels = shaped
    sel = labels == 3
    ed = WeightEditor(model)
    for branch in ("opacity", "color", "motion"):
        scores = ed.scores(sel, branch=branch)
        idx = torch.arange(0, model.num_gaussians, 97)
        d, a = model.output_deltas(branch, 0)
        J = torch.einsum("no,ni->noi", d, a)
        jbar = J[sel].mean(0)
        explicit = torch.einsum("noi,oi->n", J[idx], jbar) / (J[idx].flatten(1).norm(dim=1) * jbar.norm()).clamp_min(1e-30)
        assert torch.allclose(scores[idx], explicit, atol=1e-3), branch  # float16 activation cache: 5e-4


def test_edits_move_recolor_remove_and_undo(shaped):
    _, model, ds, labels = shaped
    ed = WeightEditor(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obj = labels == 2
    with torch.no_grad():
        base = model.decode()
    # three consecutive moves: exact on the selection, small elsewhere
    for i in range(1, 4):
        ed.move(obj, [0.0, 0.1, 0.0])
        with torch.no_grad():
            off = model.decode().offsets
        assert torch.allclose(off[obj].mean(0), torch.tensor([0.0, 0.1 * i, 0.0]), atol=0.005 * i)
        assert off[~obj].norm(dim=1).mean() < 0.25 * 0.1 * i  # measured 18 % here (8 % on the full scene)
    ed.recolor(obj, [0.1, 0.9, 0.1])
    with torch.no_grad():
        col = model.decode().colors
    assert (col[obj].mean(0) - torch.tensor([0.1, 0.9, 0.1])).abs().max() < 0.05
    ed.remove(obj)
    with torch.no_grad():
        op = model.decode().opacities
    d = (op - base.opacities).abs()
    # the solve drives the selection's aligned core to ~0; a few unaligned members keep some opacity
    gone = float((op[obj] < 0.05).float().mean())
    assert gone > 0.8 and op[obj].median() < 0.01, (gone, float(op[obj].median()))
    assert d[~obj].mean() < 0.5 * d[obj].mean()
    ed.undo()
    ed.undo()
    ed.undo()
    ed.undo()
    ed.undo()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    ed.redo()
    ed.reset()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_activations_survive_edits(shaped):
    """Lemma: an edit changes W, not the activations entering it, so the shaped structure stays."""
    _, model, _, labels = shaped
    ed = WeightEditor(model)
    a0 = {b: model.activations(b) for b in ("opacity", "color", "motion")}
    ed.move(labels == 3, [0.2, 0, 0])
    ed.recolor(labels == 4, [1.0, 0.0, 0.0])
    ed.remove(labels == 2)
    for b, a in a0.items():
        assert torch.equal(model.activations(b), a)
    ed.reset()


def test_cosine_kmeans_recovers_direction_clusters():
    from structgs.edit.editor import cosine_kmeans

    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 16) * 5
    x = torch.cat([centres[k] + 0.5 * torch.randn(40, 16, generator=g) for k in range(3)]) * torch.rand(120, 1, generator=g).add(0.5)
    lab = cosine_kmeans(x, 3)
    truth = torch.arange(3).repeat_interleave(40)
    for k in range(3):  # each true cluster maps to exactly one found cluster and vice versa
        assert lab[truth == k].unique().numel() == 1
    assert lab.unique().numel() == 3


def test_move_leakage_with_pinned_rest(shaped):
    """The rest is pinned as one group and as 4 k-means groups of its activations (about the
    other objects); the solution that moves the rest least is kept. So pin_groups=4 never
    leaks more than pinning one group, and every object moves with < 3 % leakage here."""
    _, model, _, labels = shaped
    leak, chosen = {}, {}
    with torch.no_grad():
        base = model.decode().offsets
    for groups in (1, 4):
        ed = WeightEditor(model, pin_groups=groups)
        for k in (2, 3, 4):
            obj = labels == k
            rec = ed.move(obj, [0.0, 0.1, 0.0])
            with torch.no_grad():
                off = model.decode().offsets - base
            assert torch.allclose(off[obj].mean(0), torch.tensor([0.0, 0.1, 0.0]), atol=0.005)
            leak[groups, k] = float(off[~obj].abs().mean()) / 0.1
            chosen[groups, k] = rec.info["pinned_groups"]
            ed.reset()
    assert all(leak[4, k] < 0.03 for k in (2, 3, 4)), leak
    assert all(leak[4, k] <= leak[1, k] + 1e-6 for k in (2, 3, 4)), leak
    assert all(chosen[1, k] == 1 for k in (2, 3, 4)) and all(chosen[4, k] in (1, 4) for k in (2, 3, 4)), chosen


def test_edit_leakage_every_object(shaped):
    """The editing issue's figures (structgs.eval.edits, also the demo's table) on every object of
    the test scene: removal, recolour, three consecutive moves, and bit-exact undo / redo / reset."""
    from structgs.eval.edits import measure_edits

    _, model, _, labels = shaped
    ed = WeightEditor(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for k in (2, 3, 4):
        m = measure_edits(ed, labels == k)
        assert m["remove"]["ratio"] < REMOVE_LEAK and m["remove"]["selected_below_0.05"] > 0.9, (k, m["remove"])
        assert m["recolor"]["error"] < 0.05, (k, m["recolor"])
        assert m["move"]["error"] < 0.05 and m["move"]["others"] < MOVE_LEAK, (k, m["move"])
        assert m["move"]["spread"] < MOVE_SPREAD, (k, m["move"])  # a rigid move, not a smear
        assert all(m["restore"].values()), (k, m["restore"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k


def test_measure_edits_refuses_bad_input(shaped):
    from structgs.eval.edits import measure_edits

    _, model, _, labels = shaped
    ed = WeightEditor(model)
    with pytest.raises(ValueError, match="bool tensor"):
        measure_edits(ed, labels[:10] == 2)
    with pytest.raises(ValueError, match="some but not all"):
        measure_edits(ed, torch.zeros(model.num_gaussians, dtype=torch.bool))
    ed.move(labels == 2, [0.0, 0.1, 0.0])
    with pytest.raises(ValueError, match="no edit history"):
        measure_edits(ed, labels == 2)
    ed.reset()


def test_weight_and_direct_edits_share_one_undo_stack(shaped):
    """A session mixing shaped (weight) and voting-style (direct) edits undoes them in the order
    they were made, back to the original tensors bit for bit, and redoes them exactly."""
    from structgs.edit import EditHistory, make_editor

    _, model, _, labels = shaped
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = EditHistory(model)
    weights, direct = make_editor(model, "shaped", history), make_editor(model, "voting", history)
    assert type(weights).__name__ == "WeightEditor" and type(direct).__name__ == "DirectEditor"
    a, b = labels == 2, labels == 3
    weights.remove(a)
    after_remove = {k: v.clone() for k, v in model.state_dict().items()}
    direct.move(b, [0.2, 0.0, 0.0])
    with torch.no_grad():
        s = model.decode()
    assert float(s.opacities[a].mean()) < 0.05  # the weight edit
    assert torch.allclose(s.offsets[b].mean(0), torch.tensor([0.2, 0.0, 0.0]), atol=0.02)  # the direct edit
    assert [r.kind for r in history.done] == ["remove", "move"]
    assert history.undo().kind == "move"  # the last edit first, whichever editor made it
    assert all(torch.equal(v, after_remove[k]) for k, v in model.state_dict().items())
    assert direct.undo().kind == "remove"  # either editor's undo walks the shared stack
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    weights.redo()
    weights.redo()
    with torch.no_grad():
        assert torch.equal(model.decode().offsets, s.offsets)
    history.reset()
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="unknown method"):
        make_editor(model, "magic")
    with pytest.raises(ValueError, match="takes no options"):
        make_editor(model, "voting", threshold=0.3)


def test_the_shaped_run_carries_a_matching_activation_cache(shaped):
    """``structgs shape`` writes the segmentation branch's unit activations with the run; they
    match its model, and shaped scores read from them equal the exact Jacobian cosines."""
    from structgs.edit.jacobian import default_segmentation_branch, jacobian_cosine
    from structgs.model.activation_cache import ActivationCache
    from structgs.pipeline.runs import Run

    out, model, ds, labels = shaped
    branch = default_segmentation_branch(model)
    cache = ActivationCache.load(out / f"activations-{branch}.safetensors")
    assert cache.branch == branch and cache.matches(model) and cache.unit.shape[0] == model.num_gaussians
    opened = Run.open(out, device="cpu")
    assert opened.model.activation_caches[branch].fingerprint == cache.fingerprint
    for k in (2, 3, 4):
        seed = torch.zeros(model.num_gaussians, dtype=torch.bool)
        seed[torch.nonzero(labels == k).flatten()[:3]] = True
        exact = jacobian_cosine(opened.model, seed, use_cache=False)
        cached = jacobian_cosine(opened.model, seed)
        assert (cached - exact).abs().max() < 1e-3, k  # the run's cache is float16: 5e-4 (float32: 1e-5)


def test_chained_move_then_recolour_stays_on_the_object(shaped):
    """Edits chain as the CLI chains them (each on the previous edit's result, with a fresh
    history): move an object up, then recolour it. No Gaussian of the object is left behind,
    hardly any other moves, and the recolour tints (max channel change > 0.05) at most 1 % of
    the ground -- the smear a chained recolour once left there -- and 2 % of another object."""
    from structgs.eval.edits import measure_chain

    _, model, _, labels = shaped
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for k in (2, 3, 4):
        m = measure_chain(lambda: WeightEditor(model), labels == k, labels)
        print(k, m)
        assert m["left_behind"] <= 0.005 and m["others_moved"] <= 0.01, (k, m)
        assert m["recolor_error"] < 0.05, (k, m)
        assert m["tinted"][1] <= 0.01 and max(m["tinted"].values()) <= 0.02, (k, m)
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k


def test_demo_picture_shows_selections_and_each_edit_on_its_object(shaped, tmp_path):
    """The demo's edits.png: per view, the input, the selections tinted, then the removal, the
    recolour and the moves, each changing pixels of its own object (and few others); the model
    is left as it was."""
    from PIL import Image

    from structgs.pipeline.figures import EditPlan, edit_overview

    _, model, ds, labels = shaped
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ed = WeightEditor(model)
    sels = {k: labels == k for k in (2, 3, 4)}
    plan = EditPlan(remove=2, recolor=3, move=4, rgb=(0.1, 0.8, 0.2), step=(0.0, 0.0, 0.15))
    cams = ds.split("test")[:2]
    path = edit_overview(ed, cams, torch.ones(3), sels, {2: "cone", 3: "box", 4: "torus"}, plan, tmp_path / "e.png")
    grid = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255
    h, w = 2 * cams[0].height, 2 * cams[0].width
    assert grid.shape == (18 + 2 * h + 4, 5 * w + 16, 3)
    tiles = [[grid[18 + i * (h + 4):18 + i * (h + 4) + h, j * (w + 4):j * (w + 4) + w] for j in range(5)] for i in range(2)]
    for i, cam in enumerate(cams):
        truth = torch.nn.functional.interpolate(ds.mask(cam, ds.masks_dir)[None, None].float(), size=(h, w),
                                                mode="nearest")[0, 0].numpy()
        for j, k in ((2, 2), (3, 3)):  # removal and recolour change their object's pixels, little else
            changed = np.abs(tiles[i][j] - tiles[i][0]).max(-1) > 0.1
            obj = truth == k
            if obj.sum() > 20:
                assert changed[obj].mean() > 0.5, (i, j, changed[obj].mean())
            assert changed[(truth != k) & (truth > 0)].mean() < 0.05, (i, j)
        tinted = np.abs(tiles[i][1] - tiles[i][0]).max(-1) > 0.05  # the selections are highlighted
        assert tinted[truth >= 2].mean() > 0.8 and tinted[truth == 1].mean() < 0.05
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k
