"""Fitting on a small built-in scene: quality vs the input PLY, determinism, resume, CLI."""

import hashlib

import pytest
import torch

from structgs.model import SceneModel
from structgs.training.config import FitConfig
from structgs.training.fit import Fitter

SMALL = dict(stage1_iters=300, stage1_batch=4096, stage2_iters=40, checkpoint_every=15)


def _fit(scene, out, **kw):
    cfg = FitConfig(**{**SMALL, **kw})
    return Fitter(scene, out, ply=scene / "gaussians.ply", config=cfg, device="cpu", progress=False)


def test_fit_reproduces_input_ply(small_scene_dir, tmp_path):
    ply = small_scene_dir / "gaussians.ply"
    digest = hashlib.sha256(ply.read_bytes()).hexdigest()
    report = _fit(small_scene_dir, tmp_path / "run").run()
    # the fitted decoder renders test views at least as well as the PLY it was fitted to (-0.5 dB)
    assert report["psnr_fitted"] >= report["psnr_input_ply"] - 0.5, report
    assert report["psnr_input_ply"] > 25
    assert hashlib.sha256(ply.read_bytes()).hexdigest() == digest  # input untouched
    m = SceneModel.from_pretrained(tmp_path / "run")
    assert m.num_gaussians == 6000 and m.meta["source_ply"].endswith("gaussians.ply")


def test_same_seed_same_result_and_resume(small_scene_dir, tmp_path):
    a = _fit(small_scene_dir, tmp_path / "a")
    a.run()

    class Killed(Exception):
        pass

    class KilledFitter(Fitter):
        checkpoints = 0

        def _checkpoint(self):
            super()._checkpoint()
            KilledFitter.checkpoints += 1
            if self.stage == "stage2" and self.step >= 30:
                raise Killed

    cfg = FitConfig(**SMALL)
    with pytest.raises(Killed):
        KilledFitter(small_scene_dir, tmp_path / "b", ply=small_scene_dir / "gaussians.ply", config=cfg,
                     device="cpu", progress=False).run()
    assert not (tmp_path / "b" / "config.json").exists()
    with pytest.raises(ValueError, match="already holds a run"):
        _fit(small_scene_dir, tmp_path / "b").run()
    _fit(small_scene_dir, tmp_path / "b").run(resume=True)
    ma, mb = SceneModel.from_pretrained(tmp_path / "a"), SceneModel.from_pretrained(tmp_path / "b")
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(va, vb), k


def test_fit_from_point_cloud_densifies(small_scene_dir, tmp_path):
    from structgs.training.config import DensifyConfig

    cfg = FitConfig(stage1_iters=100, stage2_iters=60, checkpoint_every=0,
                    densify=DensifyConfig(start=20, every=20, stop=60))
    f = Fitter(small_scene_dir, tmp_path / "pc", init=small_scene_dir / "points3d.ply", config=cfg, device="cpu",
               progress=False)
    report = f.run()
    assert report["num_gaussians"] > 4000  # grew from the 4000 points
    assert report["psnr_fitted"] > 14


def test_bad_arguments(small_scene_dir, tmp_path):
    with pytest.raises(ValueError, match="exactly one of --ply"):
        Fitter(small_scene_dir, tmp_path / "r")
    with pytest.raises(ValueError, match="is the input PLY"):
        Fitter(small_scene_dir, small_scene_dir / "gaussians.ply", ply=small_scene_dir / "gaussians.ply")


def test_resume_from_points_with_densification_is_bit_exact(small_scene_dir, tmp_path):
    """Fitting from points densifies in stage 2; the accumulated gradients are checkpointed, so a
    fit killed between two densification rounds resumes to exactly the uninterrupted result."""
    from structgs.training.config import DensifyConfig

    kw = dict(stage1_iters=20, stage2_iters=24, checkpoint_every=5, init_points=800,
              densify=DensifyConfig(start=8, every=8, stop=24, grad_threshold=1e-6))

    def fitter(out, cls=Fitter):
        return cls(small_scene_dir, out, init="random", config=FitConfig(**kw), device="cpu", progress=False)

    fitter(tmp_path / "a").run()

    class Killed(Exception):
        pass

    class KilledFitter(Fitter):
        def _checkpoint(self):
            super()._checkpoint()
            if self.stage == "stage2" and self.step == 10:  # after one densification, before the next
                raise Killed

    with pytest.raises(Killed):
        fitter(tmp_path / "b", KilledFitter).run()
    fitter(tmp_path / "b").run(resume=True)
    ma, mb = SceneModel.from_pretrained(tmp_path / "a"), SceneModel.from_pretrained(tmp_path / "b")
    assert ma.num_gaussians == mb.num_gaussians != 800  # densification happened
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(va, vb), k
