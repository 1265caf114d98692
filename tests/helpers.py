"""Small random scenes for tests."""

from __future__ import annotations

import math

import torch

from structgs.scene.cameras import Camera, intrinsics, look_at


def make_camera(width=40, height=32, eye=(0.0, -3.0, 1.0), fov=0.9, dtype=torch.float32, name="view") -> Camera:
    f = 0.5 * width / math.tan(0.5 * fov)
    w2c = look_at(torch.tensor(eye, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return Camera(name, w2c.to(dtype), intrinsics(f, f * 1.05, width / 2 + 0.7, height / 2 - 0.4).to(dtype), width, height)


def random_gaussians(n=60, seed=0, dtype=torch.float64, spread=0.8, scale=(-2.6, -1.6), opacity=(0.3, 0.95), channels=3):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 2 * spread
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.empty(n, 3, dtype=dtype).uniform_(*scale, generator=g))
    opac = torch.empty(n, dtype=dtype).uniform_(*opacity, generator=g)
    colors = torch.rand(n, channels, generator=g, dtype=dtype)
    return means, quats, scales, opac, colors


class Killed(Exception):
    pass


def kill_after_checkpoint(monkeypatch, when):
    """Make ``Checkpointer.save`` raise ``Killed`` right after writing a checkpoint for which
    ``when(state)`` holds (a kill between two steps, after the checkpoint is complete)."""
    from structgs.training.loop import Checkpointer

    original = Checkpointer.save

    def save(self, model, state):
        original(self, model, state)
        if when(state):
            raise Killed

    monkeypatch.setattr(Checkpointer, "save", save)


def same_weights(a, b) -> int:
    """Assert the runs at ``a`` and ``b`` hold bit-identical weights; returns their Gaussian count."""
    from structgs.model import SceneModel

    ma, mb = SceneModel.from_pretrained(a), SceneModel.from_pretrained(b)
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    return ma.num_gaussians


def run_cli(*args) -> int:
    """``structgs ARGS`` in this process; the exit code (0 when it returns normally)."""
    from structgs.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return 0
