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


def test_segment_edit_prune_compare_cli(tracked, fitted_small_run, small_scene_dir, tmp_path):
    shaped_run = tracked[0]
    masks = small_scene_dir / "masks"
    m = np.asarray(Image.open(masks / "train" / "r_0.png"))
    ys, xs = np.nonzero(m == 2)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    # shaped segmentation from two clicks, written as one boolean per Gaussian
    r = _run("segment", shaped_run, "--view", "train/r_0", "--pixel", x, y, "--pixel", x, y + 1,
             "--out", tmp_path / "sel.npy")
    sel = np.load(tmp_path / "sel.npy")
    # it says what was selected (count, share, size) and gives no ground warning for an object
    assert f"{int(sel.sum()):,} of 6,000 Gaussians" in r.stdout and "across (scene" in r.stdout, r.stdout
    assert "note:" not in r.stderr
    gy, gx = np.nonzero(m == 1)  # a click on the ground selects the ground: the user is told
    r = _run("segment", shaped_run, "--view", "train/r_0", "--pixel", int(gx[0]), int(gy[0]),
             "--out", tmp_path / "ground.npy")
    assert "note: this selection holds" in r.stderr and "probably the ground or background" in r.stderr
    labels = np.load(small_scene_dir / "labels.npy")
    assert sel.dtype == bool and sel.shape == (6000,)
    assert (sel & (labels == 2)).sum() / (sel | (labels == 2)).sum() > 0.9
    # voting from the same click, propagated by the masks
    r = _run("segment", fitted_small_run, "--view", "train/r_0", "--pixel", x, y, "--method", "voting",
             "--masks", masks, "--out", tmp_path / "vote.npy")
    assert "voting votes" in r.stderr and "12/12" in r.stderr  # progress over the views
    vote = np.load(tmp_path / "vote.npy")
    assert (vote & (labels == 2)).sum() / (vote | (labels == 2)).sum() > 0.7
    # edits chain: move (voting's direct edit), then a shaped recolour of the moved run
    _run("edit", shaped_run, "--gaussians", tmp_path / "vote.npy", "--op", "move", "--method", "voting",
         "--masks", masks, "--target", 2, "--translate", 0, 0, 0.2, "--out", tmp_path / "e1")
    r = _run("edit", tmp_path / "e1", "--gaussians", tmp_path / "sel.npy", "--op", "recolor", "--rgb", 0, 1, 0,
             "--out", tmp_path / "e2")
    assert "solving the color edit" in r.stderr  # the solver's progress
    import torch

    from structgs.model import SceneModel

    base, e2 = SceneModel.from_pretrained(shaped_run), SceneModel.from_pretrained(tmp_path / "e2")
    assert [e["op"] for e in e2.meta["edits"]] == ["move", "recolor"]
    with torch.no_grad():
        before, after = base.decode(), e2.decode()
    v, s = torch.from_numpy(vote), torch.from_numpy(sel)
    moved = (after.offsets - before.offsets)[v].mean(0)
    assert torch.allclose(moved, torch.tensor([0.0, 0.0, 0.2]), atol=1e-3)
    assert (after.offsets - before.offsets)[~v].abs().max() < 1e-5  # direct edits touch only the selection
    assert (after.colors[s].mean(0) - torch.tensor([0.0, 1.0, 0.0])).abs().max() < 0.05
    _run("render", tmp_path / "e2", "--split", "test", "--out", tmp_path / "r")
    assert len(list((tmp_path / "r" / "test").glob("*.png"))) == 4
    r = _run("prune", fitted_small_run, "--out", tmp_path / "pruned")
    import re

    assert "pruning scan" in r.stderr and "12/12" in r.stderr
    kept, dropped = (int(n) for n in re.search(r"kept (\d+), dropped (\d+)", r.stdout).groups())
    assert kept + dropped == 6000 and SceneModel.from_pretrained(tmp_path / "pruned").num_gaussians == kept
    r = _run("compare", shaped_run, "--masks", masks, "--split", "test", "--target", 2, "--json", tmp_path / "c.json")
    for method in ("shaped", "voting", "projection", "binary"):
        assert method in r.stdout
    import json

    res = json.loads((tmp_path / "c.json").read_text())
    assert res["methods"]["voting"]["miou"] > 85
    # errors: empty selection, unknown view, pixel outside
    np.save(tmp_path / "empty.npy", np.zeros(6000, bool))
    r = _run("segment", shaped_run, "--gaussians", tmp_path / "empty.npy", "--out", tmp_path / "x.npy", ok=False)
    assert r.returncode == 2 and "selects no Gaussian" in r.stderr
    r = _run("segment", shaped_run, "--view", "train/r_99", "--pixel", 1, 1, "--out", tmp_path / "x.npy", ok=False)
    assert r.returncode == 2 and "unknown view 'train/r_99'" in r.stderr
    r = _run("segment", shaped_run, "--view", "train/r_0", "--pixel", 100, 1, "--out", tmp_path / "x.npy", ok=False)
    assert r.returncode == 2 and "outside view" in r.stderr


def test_train_py_fits_and_shapes(small_scene_dir, tmp_path):
    """train.py is `structgs fit` then `structgs shape`: bit-identical runs. Each side runs in a
    fresh process with the same environment and thread count: BLAS results may depend on
    memory alignment, so a run made inside this long-lived test process is not a fair reference."""
    import os
    import pathlib

    import torch

    from helpers import same_weights

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    data, ply, masks = str(small_scene_dir), str(small_scene_dir / "gaussians.ply"), str(small_scene_dir / "masks")

    def run(*args):
        r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr

    run(root / "train.py", data, "--ply", ply, "--out", tmp_path / "run", "--stage1-iters", "60", "--stage2-iters", "3",
        "--masks", masks, "--shape-iters", "5")
    run("-m", "structgs.cli", "fit", data, "--ply", ply, "--out", tmp_path / "ref", "--stage1-iters", "60",
        "--stage2-iters", "3")
    same_weights(tmp_path / "run", tmp_path / "ref")
    run("-m", "structgs.cli", "shape", tmp_path / "ref", "--masks", masks, "--out", tmp_path / "ref-shaped", "--iters", "5")
    same_weights(tmp_path / "run-shaped", tmp_path / "ref-shaped")


def test_shape_cli_tracker_free_from_per_view_ids(fitted_small_run, small_scene_dir, tmp_path):
    import json

    from structgs.data.synthetic import shuffle_mask_ids

    raw = shuffle_mask_ids(small_scene_dir / "masks", tmp_path / "raw", seed=2)  # ids per view only
    before = {p: p.read_bytes() for p in fitted_small_run.rglob("*") if p.is_file()}
    out = tmp_path / "shaped"
    r = _run("shape", fitted_small_run, "--masks", raw, "--out", out, "--association", "none", "--iters", "200",
             "--gt-labels", small_scene_dir / "labels.npy", "--device", "cpu")
    assert "touched 15.0%" in r.stdout
    report = json.loads((out / "shape_report.json").read_text())
    assert report["config"]["association"] == "none" and report["config"]["pixels"] == 0
    e = report["activation_cosine"]["opacity"]
    assert e["within_min"] > 0.85 and e["between_max"] < 0.15, e
    assert {p: p.read_bytes() for p in fitted_small_run.rglob("*") if p.is_file()} == before  # RUN untouched
    r = _run("shape", fitted_small_run, "--masks", raw, "--out", out, "--association", "none", ok=False)
    assert r.returncode != 0 and "--resume" in r.stderr
    r = _run("shape", fitted_small_run, "--masks", raw, "--out", tmp_path / "x", "--pixels", "-1", ok=False)
    assert r.returncode != 0 and "pixels must be >= 0" in r.stderr


def test_help_shows_value_shapes_and_choices_not_python_types():
    from typer.testing import CliRunner

    from structgs.cli import app

    runner = CliRunner()

    def help_of(command):
        r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
        assert r.exit_code == 0, r.output
        return r.output

    edit = help_of("edit")
    for shown in ("X Y", "R G B", "DX DY DZ"):
        assert shown in edit
    assert "list[str]" not in edit and "float,float,float" not in edit
    shape = help_of("shape")
    assert "uniform|fps" in shape and "color|opacity|scale|rotation|motion" in shape
    for command in ("compare", "masks"):  # they take --pixel, not --mask
        assert "--mask " not in help_of(command) and "--pixel / --mask" not in help_of(command)
    assert "fits the decoder" in help_of("demo") and "shapes it" in help_of("demo")


def test_shape_options_default_to_the_config():
    """`structgs shape` (and the demo's and train's shaping steps) repeat ShapeConfig's defaults
    as typer options; they must not drift apart."""
    import dataclasses
    import enum

    import typer.main

    from structgs.cli import app
    from structgs.shaping.config import ShapeConfig

    defaults = {f.name: f.default for f in dataclasses.fields(ShapeConfig)}
    command = typer.main.get_command(app)
    checked = 0
    for name in ("shape", "demo", "train"):
        for param in command.commands[name].params:
            key = "iters" if param.name == "shape_iters" else param.name
            if key not in defaults or name != "shape" and key != "iters":
                continue
            value = param.default.value if isinstance(param.default, enum.Enum) else param.default
            want = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            assert value == want or (value in (None, []) and want in ((), [])), (name, param.name, value, want)
            checked += 1
    assert checked >= 15
