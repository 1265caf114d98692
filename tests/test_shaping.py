"""Shaping on the small built-in scene: lifting, object structure of the activations, the three
association modes, the JacobiGS objective, and resume. Thresholds were measured on this scene
(64x64 views, 6k Gaussians, 300 steps) with margin; the full-size figures are in the README."""

import numpy as np
import pytest
import torch

from structgs.model import SceneModel
from structgs.shaping.config import ShapeConfig
from structgs.shaping.losses import knn_smoothness, same_object_neighbours, supervised_infonce
from structgs.pipeline.shape import shape_run

FAST = dict(iters=300, repair_iters=100, checkpoint_every=0)


def _summary(report, branch="motion"):
    e = report["activation_cosine"][branch]
    return e["within_mean"], e["between_max"], e["between_mean"]


def test_tracked_shaping_separates_objects(tracked, fitted_small_run):
    out, report = tracked
    lift = report["lifting"]
    assert lift["coverage"] > 0.6 and lift["accuracy"] > 0.95
    # unseen Gaussians (object undersides) filled by colour-aware kNN: nearly all labelled, still right
    assert lift["coverage_filled"] > 0.99 and lift["accuracy_filled"] > 0.98, lift
    assert report["fraction_touched"] <= 0.15 + 1e-6
    # side channel: the decoded scene is unchanged, so no PSNR is lost
    assert abs(report["psnr_drop"]) < 1e-3
    for branch in ("opacity", "scale", "rotation", "motion"):
        e = report["activation_cosine"][branch]
        # the targets, on every object / pair (measured >= 0.927 and <= 0.048 at 300 steps)
        assert e["within_min"] >= 0.9 and e["between_max"] <= 0.1, (branch, e["within_min"], e["between_max"])
    e = report["activation_cosine"]["color"]  # view-dependent input; its worst object lags at 300 steps (0.92)
    assert e["within_mean"] >= 0.9 and e["within_min"] >= 0.85 and e["between_max"] <= 0.1, e
    # before shaping the same matrix shows no object structure
    from structgs.shaping.report import activation_report
    from structgs.pipeline.runs import run_dataset

    base = SceneModel.from_pretrained(fitted_small_run)
    labels = torch.from_numpy(np.load(run_dataset(base, None).root / "labels.npy"))
    before = activation_report(base, labels, run_dataset(base, None).split("train")[:2], ["motion"])["motion"]
    assert before["between_mean"] > 0.5
    assert (out / "lifted_labels.npy").is_file() and not (fitted_small_run / "lifted_labels.npy").exists()


def test_finetune_mode_separates_objects_at_a_psnr_cost(fitted_small_run, small_scene_dir, tmp_path):
    """side_width 0: the paper's way, the decoder itself is fine-tuned (then repaired)."""
    cfg = ShapeConfig(side_width=0, branches=("opacity",), **FAST)
    report = shape_run(fitted_small_run, small_scene_dir / "masks", tmp_path / "ft", cfg, device="cpu", progress=False)
    model = SceneModel.from_pretrained(tmp_path / "ft")
    assert model.config.side_branches == ()
    e = report["activation_cosine"]["opacity"]
    assert e["within_mean"] > 0.85 and e["between_mean"] < 0.15, e
    base = SceneModel.from_pretrained(fitted_small_run)
    first = "decoder.branches.opacity.layers.0.weight"
    assert not torch.equal(model.state_dict()[first], base.state_dict()[first])  # the decoder itself was trained
    assert model.decoder.perturbable_weight("opacity").shape == base.decoder.perturbable_weight("opacity").shape


def test_fill_unseen_by_position_and_colour():
    from structgs.shaping.lifting import fill_features, fill_unseen

    g = torch.Generator().manual_seed(0)
    # ground (label 1, grey) at z = 0, an object (label 2, red) above it, background (seen, no id) far away
    ground = torch.rand(200, 3, generator=g) * torch.tensor([2.0, 2.0, 0.0])
    obj = torch.rand(100, 3, generator=g) * 0.5 + torch.tensor([0.75, 0.75, 0.05])
    far = torch.rand(50, 3, generator=g) + torch.tensor([10.0, 0, 0])
    # unseen: the object's underside (at z = 0.01, red) and points of the far background
    under = torch.rand(30, 3, generator=g) * torch.tensor([0.5, 0.5, 0.0]) + torch.tensor([0.75, 0.75, 0.01])
    far_unseen = torch.rand(10, 3, generator=g) + torch.tensor([10.0, 0, 0])
    pts = torch.cat([ground, obj, far, under, far_unseen])
    grey, red = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.9, 0.1, 0.1])
    cols = torch.cat([grey.expand(200, 3), red.expand(100, 3), grey.expand(50, 3), red.expand(30, 3), grey.expand(10, 3)])
    labels = torch.cat([torch.ones(200), 2 * torch.ones(100), -torch.ones(50), -torch.ones(40)]).long()
    seen = torch.cat([torch.ones(350), torch.zeros(40)]).bool()
    filled = fill_unseen(labels, seen, fill_features(pts, cols, 0.3), k=8)
    assert torch.equal(filled[:350], labels[:350])  # seen Gaussians keep their labels
    assert (filled[350:380] == 2).all()  # the underside goes with the object, by colour
    assert (filled[380:] == -1).all()  # background majority: stays unlabelled
    by_position = fill_unseen(labels, seen, fill_features(pts, cols, 0.0), k=8)
    assert (by_position[350:380] == 1).float().mean() > 0.5  # position alone hands most of it to the ground


def test_fill_unseen_per_view_keeps_ids_within_each_view():
    from structgs.shaping.lifting import UNLABELLED, fill_unseen_per_view

    # Gaussians 0-3: object A (ids 7 / 3 in views 0 / 1), 4-7: object B (ids 9 / 5), 8: A's
    # interior (no view shows it), 9: B's interior, 10-11: background (seen on the ignore id),
    # 12: unseen near the background
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0], [2, 0, 0], [2.1, 0, 0], [2, 0.1, 0],
                        [2.1, 0.1, 0], [0.05, 0.05, 0.01], [2.07, 0.08, 0.01], [9, 0, 0], [9.1, 0, 0], [9.05, 0, 0]])
    per_view = torch.tensor([[7, 7, 7, -1, 9, 9, -1, -1, -1, -1, -1, -1, -1],
                             [-1, 3, 3, 3, 5, -1, -1, -1, -1, -1, -1, -1, -1]])
    seen = torch.tensor([[1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0],
                         [0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0]]).bool()  # view 1 sees 6, 7 on the ignore id
    filled = fill_unseen_per_view(per_view, seen, pts, k=3)
    seen_any = seen.any(0)
    assert torch.equal(filled[:, seen_any], per_view[:, seen_any])  # seen Gaussians keep their per-view ids
    assert filled[0, 8] == 7 and filled[1, 8] == 3  # A's interior: A's id of each view, never mixed
    assert filled[0, 9] == 9  # view 0: only its neighbour 5 is shown there, and votes 9
    assert filled[1, 9] == UNLABELLED  # view 1: its neighbours 6, 7 are on the ignore id there
    assert (filled[:, 12] == UNLABELLED).all()  # background majority
    # no neighbour shown by the view: no vote, stays unlabelled
    assert fill_unseen_per_view(per_view, seen & torch.tensor([[1], [0]]).bool(), pts, k=3)[1, 8] == UNLABELLED


def test_overlap_association_recovers_shuffled_ids(overlap_clean):
    _, report = overlap_clean
    assert report["lifting"]["accuracy"] > 0.9  # after optimal id matching with the ground truth
    assert report["lifting"]["objects"] == 4  # ground + 3 objects, by consensus
    for branch in ("opacity", "scale", "rotation", "motion"):  # the targets, as with tracked ids
        e = report["activation_cosine"][branch]
        assert e["within_min"] >= 0.9 and e["between_max"] <= 0.1, (branch, e["within_min"], e["between_max"])
    e = report["activation_cosine"]["color"]
    assert e["within_mean"] >= 0.9 and e["between_max"] <= 0.1, e


def test_tracker_free_mode_separates_objects(none_clean):
    # ids shuffled independently in every view: no id means anything outside its view
    _, report = none_clean
    lift = report["lifting"]
    assert lift["coverage"] > 0.99 and lift["accuracy_per_view"] > 0.97, lift
    assert report["fraction_touched"] <= 0.15 + 1e-6  # no feature render by default: only the pool
    for branch, e in report["activation_cosine"].items():
        # the targets on every object / pair (measured >= 0.966 and <= 0.038 at 300 steps)
        assert e["within_min"] >= 0.9 and e["between_max"] <= 0.1, (branch, e["within_min"], e["between_max"])


def test_tracker_free_pixel_term_renders_activations(fitted_small_run, shuffled_masks, tmp_path):
    # Eq. 12 as the paper has it (pixels of the rendered activation image), a few steps: it runs,
    # touches every Gaussian the views show, and already orders the objects
    cfg = ShapeConfig(association="none", view_gaussians=False, pixels=512, **{**FAST, "iters": 60})
    report = shape_run(fitted_small_run, shuffled_masks, tmp_path / "px", cfg, device="cpu", progress=False)
    assert report["fraction_touched"] > 0.5
    within, between_max, between_mean = _summary(report)
    assert within - between_mean > 0.15, (within, between_mean)


def test_tracker_free_views_without_objects(fitted_small_run, shuffled_masks, tmp_path):
    from structgs.scene.images import load_id_mask, save_id_mask

    blank = tmp_path / "half_blank"
    files = sorted(shuffled_masks.rglob("*.png"))
    for i, f in enumerate(files):  # every other view shows no object at all
        m = load_id_mask(f)
        save_id_mask(m if i % 2 else torch.zeros_like(m), blank / f.relative_to(shuffled_masks))
    cfg = ShapeConfig(association="none", iters=40, checkpoint_every=0)
    report = shape_run(fitted_small_run, blank, tmp_path / "out", cfg, device="cpu", progress=False)
    model = SceneModel.from_pretrained(tmp_path / "out")
    assert all(torch.isfinite(p).all() for p in model.parameters())  # empty batches add nothing, not NaN
    within, _, between_mean = _summary(report)
    assert within - between_mean > 0.3
    for f in files:  # nothing at all to learn from: a clear error, not a silent no-op
        save_id_mask(torch.zeros_like(load_id_mask(f)), blank / f.relative_to(shuffled_masks))
    for association in ("none", "tracked"):
        with pytest.raises(ValueError, match="label no Gaussian"):
            shape_run(fitted_small_run, blank, tmp_path / association, ShapeConfig(association=association, iters=5),
                      device="cpu", progress=False)


@pytest.mark.parametrize("mode", ["side channel, tracker-free", "fine-tune, killed in the repair pass"])
def test_shaping_resumes_exactly(fitted_small_run, shuffled_masks, tmp_path, monkeypatch, mode):
    from helpers import Killed, kill_after_checkpoint, same_weights

    if mode.startswith("side"):
        cfg, kill_at = ShapeConfig(association="none", iters=40, checkpoint_every=20), ("shape", 20)
    else:
        cfg = ShapeConfig(association="overlap", side_width=0, iters=20, repair_iters=20, checkpoint_every=10)
        kill_at = ("repair", 10)
    shape_run(fitted_small_run, shuffled_masks, tmp_path / "whole", cfg, device="cpu", progress=False)
    kill_after_checkpoint(monkeypatch, lambda s: (s.stage, s.step) == kill_at)
    with pytest.raises(Killed):
        shape_run(fitted_small_run, shuffled_masks, tmp_path / "split", cfg, device="cpu", progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "split" / "config.json").exists()
    with pytest.raises(ValueError, match="--resume"):  # never silently restarts over a killed run
        shape_run(fitted_small_run, shuffled_masks, tmp_path / "split", cfg, device="cpu", progress=False)
    shape_run(fitted_small_run, shuffled_masks, tmp_path / "split", cfg, resume=True, device="cpu", progress=False)
    same_weights(tmp_path / "whole", tmp_path / "split")


def test_jacobian_objective_runs_and_shapes(fitted_small_run, small_scene_dir, tmp_path):
    cfg = ShapeConfig(objective="jacobian", branches=("opacity",), **{**FAST, "iters": 100})
    report = shape_run(fitted_small_run, small_scene_dir / "masks", tmp_path / "jac", cfg, device="cpu", progress=False)
    within, between_max, between_mean = _summary(report, "opacity")
    assert within - between_mean > 0.2


def test_infonce_prefers_separated_features():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    separated = torch.tensor([[1.0, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [0, 1, 0], [0.1, 1, 0], [0, 1, 0.1]])
    mixed = separated.clone()
    mixed[3:] = mixed[3:] + torch.tensor([0.8, 0, 0])
    assert supervised_infonce(separated, labels) < supervised_infonce(mixed, labels)


def _reference_infonce(features, labels, tau, trusted=None):
    """The loss as written (autograd through every B x B intermediate), the fused one's reference."""
    unit = torch.nn.functional.normalize(features, dim=-1, eps=1e-8)
    cos = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    logits = torch.where(same, cos, cos.clamp_min(0.0)) / tau
    pos, negative = same & ~torch.eye(len(labels), dtype=torch.bool), ~same
    if trusted is not None:
        pos, negative = pos & trusted, negative & trusted
    lse = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
    return torch.nn.functional.softplus(lse - logits)[pos].mean()


@pytest.mark.parametrize("with_trusted", [False, True])
def test_fused_infonce_matches_autograd_and_finite_differences(with_trusted):
    """The fused loss (gradient formed in its forward pass) against the plain autograd form, in
    float64 to 1e-12, with labels of one Gaussian (no positives), an anchor with no negatives
    (trusted pairs) and clamped negative cosines; then torch's finite-difference gradcheck."""
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(48, 12, dtype=torch.float64, generator=g).requires_grad_(True)
    labels = torch.randint(0, 4, (48,), generator=g)
    labels[0] = 7  # alone: no positive pair
    trusted = None
    if with_trusted:
        trusted = torch.rand(48, 48, generator=g) > 0.3
        trusted = trusted & trusted.T
        trusted[1, labels != labels[1]] = False  # anchor 1 has no negatives left
    ours = supervised_infonce(feats, labels, 0.1, trusted)
    ref = _reference_infonce(feats, labels, 0.1, trusted)
    (g_ours,) = torch.autograd.grad(ours, feats)
    (g_ref,) = torch.autograd.grad(ref, feats)
    assert abs(ours.item() - ref.item()) < 1e-12
    assert (g_ours - g_ref).abs().max() < 1e-12 and g_ref.abs().max() > 1e-3
    assert (feats.detach() @ feats.detach().T < 0).any()  # some negatives are clamped
    small = feats[:16].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: supervised_infonce(f, labels[:16], 0.2), (small,))
    one_label = supervised_infonce(feats, torch.zeros(48, dtype=torch.long))  # no negatives: 0, zero gradient
    (g_one,) = torch.autograd.grad(one_label, feats)
    assert one_label.item() == 0.0 and g_one.abs().max() == 0.0


def test_shaper_pool_activations_are_the_models(fitted_small_run, small_scene_dir):
    """The shaper decodes the pool once per step and keeps fixed inputs and trunk outputs of
    view-independent branches; the activations it trains on, and Eq. 10's neighbour targets
    (gathered as a weighted embedding bag), are the model's, for every branch, before and after a
    step, in both neighbour layouts (pool smaller and larger than B x k)."""
    from structgs.pipeline.runs import Run
    from structgs.shaping.shaper import Shaper

    run = Run.open(fitted_small_run, None, "cpu")
    model = run.model
    shaper = Shaper(model, run.dataset, small_scene_dir / "masks", ShapeConfig(**FAST), progress=False)
    shaper.prepare()
    cam = shaper.cams[1]
    pos = torch.arange(0, shaper.pool.numel(), 7)
    assert pos.numel() * shaper.pool_knn.shape[1] > shaper.pool.numel() > 5 * shaper.pool_knn.shape[1]
    for step in range(2):
        for b in shaper.branches:
            with torch.no_grad():
                ours = shaper._pool_activations(b, cam, pos)
                idx = shaper.pool[pos]
                want = model.activations(b, idx, model.view_inputs(cam, idx))
            assert torch.allclose(ours, want, atol=1e-6), b
        for batch in (pos, pos[:5]):  # B x k above the pool's size (decode the pool) and below (the neighbours)
            nbr = shaper.pool[shaper.pool_knn[batch]]
            keep = torch.rand(nbr.shape, generator=torch.Generator().manual_seed(step)) > 0.3
            keep[0] = False  # a row without a kept neighbour
            got = shaper._neighbour_targets(cam, batch, keep)
            for b in shaper.branches:  # Eq. 10's target by its definition: the mean kept unit neighbour
                with torch.no_grad():
                    flat = nbr.reshape(-1)
                    unit = torch.nn.functional.normalize(model.activations(b, flat, model.view_inputs(cam, flat)), dim=-1)
                unit = unit.reshape(*nbr.shape, -1)
                want = (unit * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp_min(1)
                assert torch.allclose(got[b].mean, want, atol=1e-6), b
                assert got[b].rows.tolist() == keep.any(1).tolist()
        with shaper._gradients_only_for(shaper.opt):
            shaper._shape_step(step)  # the side channel changes; the cached parts must not go stale
    assert "color" not in shaper._fixed and set(shaper._fixed) == set(shaper.branches) - {"color"}
    assert all(p.requires_grad for p in model.decoder.parameters())  # restored after the step


def test_smoothness_within_labels_ignores_the_touching_object():
    """A ground Gaussian at a contact with two ground and two object neighbours: Eq. 10 over all
    neighbours pulls it towards the object; over the same-label ones its gradient pulls it
    along the ground direction only, and the loss equals Eq. 10 on those neighbours alone."""
    ground, obj = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    a = ground.clone()[None].requires_grad_(True)
    nbrs = torch.stack([ground, ground, obj, obj])[None]  # (1, 4, 2)
    keep = same_object_neighbours(torch.tensor([1]), torch.tensor([[1, -1, 4, 4]]))
    assert keep.tolist() == [[True, True, False, False]]
    knn_smoothness(a, nbrs).backward()
    assert a.grad[0, 1] < -1e-3  # all neighbours: descending the loss raises the object component
    a.grad = None
    loss = knn_smoothness(a, nbrs, keep)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and a.grad.abs().max() < 1e-6
    assert torch.allclose(knn_smoothness(a, nbrs, keep), knn_smoothness(a, nbrs[:, :2]))
    none = torch.zeros(1, 4, dtype=torch.bool)  # no neighbour counts: no term, not NaN
    assert knn_smoothness(a, nbrs, none).item() == 0.0
    with pytest.raises(ValueError, match=r"keep must be \(1, 4\)"):
        knn_smoothness(a, nbrs, keep[:, :3])


def test_shape_errors(fitted_small_run, small_scene_dir, tmp_path):
    with pytest.raises(ValueError, match="is the input run"):
        shape_run(fitted_small_run, small_scene_dir / "masks", fitted_small_run)
    with pytest.raises(FileNotFoundError, match="masks directory does not exist"):
        shape_run(fitted_small_run, tmp_path / "nomasks", tmp_path / "o")
    bad = tmp_path / "badmasks"
    (bad / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"train/r_0\.png: mask file missing"):
        shape_run(fitted_small_run, bad, tmp_path / "o2")
    with pytest.raises(ValueError, match="association must be one of"):
        ShapeConfig(association="deva")


def test_balanced_batches_have_equal_label_counts(fitted_small_run, small_scene_dir, tmp_path):
    from structgs.scene.dataset import load_dataset
    from structgs.shaping.shaper import Shaper

    sh = Shaper(SceneModel.from_pretrained(fitted_small_run), load_dataset(small_scene_dir), small_scene_dir / "masks",
                ShapeConfig(balanced=True, batch=400), progress=False)
    sh.prepare()
    pos = sh._batch_positions(400)
    assert pos.unique().numel() == pos.numel()  # no Gaussian twice in a batch
    pool_labels = sh.labels[sh.pool]
    ids = pool_labels.unique().tolist()
    per = 400 // len(ids)
    got = sh.labels[sh.pool[pos]]
    for k in ids:  # every label gets `per` draws (or all it has), whatever its share of the pool
        assert int((got == k).sum()) == min(per, int((pool_labels == k).sum())), k


def test_activation_report_streams_rows_with_the_one_piece_cosines():
    """The report holds ``rows`` Gaussians' activations at a time; its matrices equal the mean
    pairwise cosines computed in one piece, averaged over the views (unlabelled Gaussians left
    out, ids not contiguous)."""
    from structgs.data import SceneSpec
    from structgs.data.synthetic import make_cameras
    from structgs.decoder import DecoderConfig
    from structgs.shaping.losses import object_cosine_matrix
    from structgs.shaping.report import activation_report

    torch.manual_seed(0)
    m = SceneModel(DecoderConfig(view_dependent_branches=("color",)), 300)
    with torch.no_grad():
        m.centroids.normal_()
        m.latents.normal_()
    labels = torch.randint(-1, 4, (300,))
    labels[labels == 2] = 7
    ids = [0, 1, 3, 7]

    def one_piece(a):  # mean over pairs (i in k, j in l) of cos(a_i, a_j) = mean unit_k . mean unit_l
        unit = torch.nn.functional.normalize(a, dim=-1)
        means = torch.stack([unit[labels == k].mean(0) for k in ids])
        return means @ means.T

    cams = make_cameras(SceneSpec(image_size=16, num_train=3, num_test=1))["train"]
    streamed = activation_report(m, labels, cams, ["color", "opacity"], rows=37)
    per_view = {b: [one_piece(m.activations(b, camera=c)) for c in cams] for b in ("color", "opacity")}
    assert not torch.allclose(per_view["color"][0], per_view["color"][1], atol=1e-4)  # colour sees the view
    for branch in ("color", "opacity"):
        assert streamed[branch]["ids"] == ids
        expected = torch.stack(per_view[branch]).mean(0)
        assert torch.allclose(torch.tensor(streamed[branch]["matrix"]), expected, atol=1e-6), branch
    assert torch.allclose(object_cosine_matrix(m.activations("opacity"), labels)[0], per_view["opacity"][0], atol=1e-6)
