import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def small_scene_dir(tmp_path_factory) -> Path:
    """A small built-in scene on disk (3 objects, 6k Gaussians, 64x64 views)."""
    from structgs.data import SceneSpec, generate_scene, write_scene

    out = tmp_path_factory.mktemp("scene")
    spec = SceneSpec(seed=3, num_objects=3, num_gaussians=6000, image_size=64, num_train=12, num_test=4)
    return write_scene(generate_scene(spec), out, progress=False)
