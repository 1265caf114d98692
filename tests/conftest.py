import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# fixtures that generate, fit or shape a scene: a test that needs one is in the slow tier
# (`pytest -m "not slow"` runs the fast tier for local work; CI runs everything)
HEAVY_FIXTURES = {"small_scene_dir", "fitted_small_run", "tracked", "overlap_clean", "none_clean", "shuffled_masks",
                  "noisy_masks", "tiny_weights"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED


def _scene(tmp_path_factory, name: str, **spec) -> Path:
    from structgs.data import SceneSpec, generate_scene, write_scene

    return write_scene(generate_scene(SceneSpec(**spec)), tmp_path_factory.mktemp(name), progress=False)


def _fit(scene: Path, out: Path) -> Path:
    """Fitted quickly: attribute regression + a few photometric steps."""
    from structgs.training.config import FitConfig
    from structgs.pipeline.fit import fit_run

    cfg = FitConfig(stage1_iters=400, stage1_batch=4096, stage2_iters=30, checkpoint_every=0)
    fit_run(scene, out, ply=scene / "gaussians.ply", config=cfg, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def small_scene_dir(tmp_path_factory) -> Path:
    """A small built-in scene on disk (3 objects, 6k Gaussians, 64x64 views)."""
    return _scene(tmp_path_factory, "scene", seed=3, num_objects=3, num_gaussians=6000, image_size=64, num_train=12,
                  num_test=4)


@pytest.fixture(scope="session")
def fitted_small_run(small_scene_dir, tmp_path_factory) -> Path:
    return _fit(small_scene_dir, tmp_path_factory.mktemp("run") / "fitted")


FAST_SHAPING = dict(iters=300, repair_iters=100, checkpoint_every=0)


@pytest.fixture(scope="session")
def shuffled_masks(small_scene_dir, tmp_path_factory):
    """The small scene's ground-truth masks with ids permuted independently per view."""
    from structgs.data.synthetic import shuffle_mask_ids

    return shuffle_mask_ids(small_scene_dir / "masks", tmp_path_factory.mktemp("shuffled") / "masks", seed=1)


@pytest.fixture(scope="session")
def tracked(fitted_small_run, small_scene_dir, tmp_path_factory):
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run

    out = tmp_path_factory.mktemp("shaped") / "tracked"
    return out, shape_run(fitted_small_run, small_scene_dir / "masks", out, ShapeConfig(**FAST_SHAPING), device="cpu",
                          progress=False)


@pytest.fixture(scope="session")
def overlap_clean(fitted_small_run, shuffled_masks, tmp_path_factory):
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run

    out = tmp_path_factory.mktemp("shaped") / "overlap"
    return out, shape_run(fitted_small_run, shuffled_masks, out, ShapeConfig(association="overlap", **FAST_SHAPING),
                          device="cpu", progress=False)


@pytest.fixture(scope="session")
def none_clean(fitted_small_run, shuffled_masks, tmp_path_factory):
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run

    out = tmp_path_factory.mktemp("shaped") / "none"
    return out, shape_run(fitted_small_run, shuffled_masks, out, ShapeConfig(association="none", **FAST_SHAPING),
                          device="cpu", progress=False)
