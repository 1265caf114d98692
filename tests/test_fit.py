"""Fitting on a small built-in scene: quality vs the input PLY, determinism, resume, CLI."""

import hashlib

import pytest
import torch

from structgs.model import SceneModel
from structgs.pipeline.fit import fit_run
from structgs.training.config import FitConfig
from structgs.training.loop import Checkpointer

from helpers import Killed, kill_after_checkpoint, same_weights

SMALL = dict(stage1_iters=300, stage1_batch=4096, stage2_iters=40, checkpoint_every=15)


def _fit(scene, out, resume=False, **kw):
    cfg = FitConfig(**{**SMALL, **kw})
    return fit_run(scene, out, ply=scene / "gaussians.ply", config=cfg, resume=resume, device="cpu", progress=False)


def test_fit_reproduces_input_ply(small_scene_dir, tmp_path):
    ply = small_scene_dir / "gaussians.ply"
    digest = hashlib.sha256(ply.read_bytes()).hexdigest()
    report = _fit(small_scene_dir, tmp_path / "run")
    # the fitted decoder renders test views at least as well as the PLY it was fitted to (-0.5 dB)
    assert report["psnr_fitted"] >= report["psnr_input_ply"] - 0.5, report
    assert report["psnr_input_ply"] > 25
    assert hashlib.sha256(ply.read_bytes()).hexdigest() == digest  # input untouched
    m = SceneModel.from_pretrained(tmp_path / "run")
    assert m.num_gaussians == 6000 and m.scene.source_ply.endswith("gaussians.ply")


def test_same_seed_same_result_and_resume(small_scene_dir, tmp_path, monkeypatch):
    _fit(small_scene_dir, tmp_path / "a")
    kill_after_checkpoint(monkeypatch, lambda s: s.stage == "stage2" and s.step >= 30)
    with pytest.raises(Killed):
        _fit(small_scene_dir, tmp_path / "b")
    monkeypatch.undo()
    assert not (tmp_path / "b" / "config.json").exists()  # unfinished: no commit point
    with pytest.raises(ValueError, match="already holds a run"):
        _fit(small_scene_dir, tmp_path / "b")
    _fit(small_scene_dir, tmp_path / "b", resume=True)
    same_weights(tmp_path / "a", tmp_path / "b")


def test_stage1_only_then_stage2_is_the_whole_fit(small_scene_dir, tmp_path):
    """``Fitter.train(stop_after="stage1")`` (attribute regression only, for already-trained
    PLYs) and a later ``train()`` give exactly the uninterrupted fit."""
    from structgs.pipeline.fit import starting_gaussians
    from structgs.scene.dataset import load_dataset
    from structgs.model import SceneInfo
    from structgs.training.fit import Fitter

    def fitter(stop_after):
        cfg = FitConfig(**{**SMALL, "checkpoint_every": 0})
        ds = load_dataset(small_scene_dir, background=cfg.background)
        gen = torch.Generator().manual_seed(cfg.seed)
        f = Fitter(ds, starting_gaussians(ds, small_scene_dir / "gaussians.ply", None, 0, gen), cfg,
                   from_points=False, generator=gen, progress=False)
        f.initialise(SceneInfo(), {})
        f.train(stop_after=stop_after)
        return f

    half = fitter("stage1")
    assert half.stage == "stage2" and half.step == 0
    mid = {k: v.clone() for k, v in half.model.state_dict().items()}
    whole = fitter(None)
    assert whole.stage == "done"
    assert any(not torch.equal(mid[k], v) for k, v in whole.model.state_dict().items())  # stage 2 changed it
    half.train()
    for k, v in whole.model.state_dict().items():
        assert torch.equal(half.model.state_dict()[k], v), k


def test_the_compiled_rasterizer_fits_as_the_eager_one(small_scene_dir, tmp_path):
    """``compile_rasterizer`` (``fit --compile-rasterizer``): stage 2 with the compiled kernels
    takes the same steps as with the eager ones, to float32 rounding."""
    from structgs.render import torch_backend

    short = dict(stage1_iters=100, stage2_iters=8, checkpoint_every=0)
    eager = _fit(small_scene_dir, tmp_path / "eager", **short)
    compiled = _fit(small_scene_dir, tmp_path / "compiled", compile_rasterizer=True, **short)
    assert "pair" in torch_backend._COMPILED and not torch_backend._COMPILED.get("failed")
    assert abs(compiled["psnr_fitted"] - eager["psnr_fitted"]) < 0.01
    a = SceneModel.from_pretrained(tmp_path / "eager").state_dict()
    b = SceneModel.from_pretrained(tmp_path / "compiled").state_dict()
    for k in a:
        # Adam moves an entry by up to ~lr a step however small its gradient: an entry whose
        # gradient is at rounding level may take a different step (21 latent entries of 192k
        # ended up to 7e-4 apart, the stage-2 latent lr being 1e-3); such entries must stay rare
        off = ~torch.isclose(a[k], b[k], rtol=1e-3, atol=1e-4)
        assert off.float().mean() <= 1e-3, (k, int(off.sum()))


def test_fit_from_point_cloud_densifies(small_scene_dir, tmp_path):
    from structgs.training.config import DensifyConfig

    cfg = FitConfig(stage1_iters=100, stage2_iters=60, checkpoint_every=0,
                    densify=DensifyConfig(start=20, every=20, stop=60))
    report = fit_run(small_scene_dir, tmp_path / "pc", init=small_scene_dir / "points3d.ply", config=cfg, device="cpu",
                     progress=False)
    assert report["num_gaussians"] > 4000  # grew from the 4000 points
    assert report["psnr_fitted"] > 14


def test_bad_arguments(small_scene_dir, tmp_path):
    with pytest.raises(ValueError, match="exactly one of --ply"):
        fit_run(small_scene_dir, tmp_path / "r")
    with pytest.raises(ValueError, match="is the input PLY"):
        fit_run(small_scene_dir, small_scene_dir / "gaussians.ply", ply=small_scene_dir / "gaussians.ply")
    assert not (tmp_path / "r").exists()


def test_resume_from_points_with_densification_is_bit_exact(small_scene_dir, tmp_path, monkeypatch):
    """Fitting from points densifies in stage 2; the accumulated gradients are checkpointed, so a
    fit killed between two densification rounds resumes to exactly the uninterrupted result."""
    from structgs.training.config import DensifyConfig

    kw = dict(stage1_iters=20, stage2_iters=24, checkpoint_every=5, init_points=800,
              densify=DensifyConfig(start=8, every=8, stop=24, grad_threshold=1e-6))

    def fit(out, resume=False):
        fit_run(small_scene_dir, out, init="random", config=FitConfig(**kw), resume=resume, device="cpu",
                progress=False)

    fit(tmp_path / "a")
    kill_after_checkpoint(monkeypatch, lambda s: s.stage == "stage2" and s.step == 10)  # between two densifications
    with pytest.raises(Killed):
        fit(tmp_path / "b")
    monkeypatch.undo()
    fit(tmp_path / "b", resume=True)
    assert same_weights(tmp_path / "a", tmp_path / "b") != 800  # densification happened


def test_attribute_regression_alone_matches_a_trained_ply(small_scene_dir, tmp_path):
    """``--stage2-iters 0``: for a PLY that is already trained, stage 1 alone (no rendering while
    training) reproduces it (measured here: 0.1 dB below the PLY with 300 steps)."""
    report = _fit(small_scene_dir, tmp_path / "s1", stage2_iters=0)
    assert report["psnr_fitted"] >= report["psnr_input_ply"] - 0.5, report
    assert Checkpointer(tmp_path / "s1", "fit").job() == {"kind": "fit", "stage": "done", "step": 0}
