"""The CLI as a user runs it (subprocess, real files)."""

import subprocess
import sys

import numpy as np
from PIL import Image


def _run(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "structgs.cli", *map(str, args)], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def test_render_ply_layout_and_selection(small_scene_dir, tmp_path):
    ply = small_scene_dir / "gaussians.ply"
    before = ply.read_bytes()
    _run("render", "--data", small_scene_dir, "--ply", ply, "--split", "test", "--out", tmp_path / "out")
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert files == [f"test/r_{i}.png" for i in range(4)]
    assert Image.open(tmp_path / "out" / "test" / "r_0.png").size == (64, 64)
    # a selection of one object renders as a binary mask close to its ground-truth mask
    labels = np.load(small_scene_dir / "labels.npy")
    np.save(tmp_path / "sel.npy", labels == 2)
    _run("render", "--data", small_scene_dir, "--ply", ply, "--split", "test", "--out", tmp_path / "sel",
         "--selection", tmp_path / "sel.npy")
    pred = np.asarray(Image.open(tmp_path / "sel" / "test" / "r_0.png").convert("L")) > 127
    gt = np.asarray(Image.open(small_scene_dir / "masks" / "test" / "r_0.png")) == 2
    assert gt.sum() > 20 and (pred & gt).sum() / (pred | gt).sum() > 0.9
    assert ply.read_bytes() == before


def test_bad_input_is_one_clear_line(small_scene_dir, tmp_path):
    r = _run("render", "--data", small_scene_dir, "--ply", tmp_path / "missing.ply", "--out", tmp_path, ok=False)
    assert r.returncode == 2 and "missing.ply: no such PLY file" in r.stderr and "Traceback" not in r.stderr
    r = _run("render", "--data", small_scene_dir, "--ply", small_scene_dir / "gaussians.ply", "--split", "val",
             "--out", tmp_path, ok=False)
    assert r.returncode == 2 and "unknown split 'val'" in r.stderr
    np.save(tmp_path / "bad.npy", np.zeros(5, bool))
    r = _run("render", "--data", small_scene_dir, "--ply", small_scene_dir / "gaussians.ply", "--out", tmp_path,
             "--selection", tmp_path / "bad.npy", ok=False)
    assert r.returncode == 2 and "expected (6000,)" in r.stderr
