"""Bad input and faults: one clear line naming the file or option, and nothing written or overwritten."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from structgs.utils.io import save_npy


def _run(*args):
    return subprocess.run([sys.executable, "-m", "structgs.cli", *map(str, args)], capture_output=True, text=True)


def _one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_segment_and_edit_refuse_a_run_that_was_never_shaped(fitted_small_run, small_scene_dir, tmp_path):
    before = _files(fitted_small_run)
    r = _run("segment", fitted_small_run, "--view", "train/r_0", "--pixel", 30, 30, "--out", tmp_path / "s.npy")
    _one_line_error(r, str(fitted_small_run), "not a shaped run", "structgs shape")
    r = _run("edit", fitted_small_run, "--view", "train/r_0", "--pixel", 30, 30, "--op", "remove",
             "--out", tmp_path / "e")
    _one_line_error(r, "not a shaped run")
    r = _run("compare", fitted_small_run, "--masks", small_scene_dir / "masks", "--target", 2)
    _one_line_error(r, "not a shaped run")
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "e").exists()
    assert _files(fitted_small_run) == before


def test_segment_out_never_overwrites_its_input_or_the_run(tracked, tmp_path):
    run = tracked[0]
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(10))
    before, run_before = ids.read_bytes(), _files(run)
    r = _run("segment", run, "--gaussians", ids, "--out", ids)
    _one_line_error(r, f"--out {ids} is also an input")
    r = _run("segment", run, "--gaussians", ids, "--out", run / "lifted_labels.npy")
    _one_line_error(r, "lies inside the run")
    assert ids.read_bytes() == before and _files(run) == run_before


def test_edit_and_prune_refuse_an_existing_output(tracked, fitted_small_run, tmp_path):
    run = tracked[0]
    other = fitted_small_run
    before = _files(other)
    r = _run("edit", run, "--gaussians", tmp_path / "missing.npy", "--op", "remove", "--out", other)
    _one_line_error(r, f"edit --out {other} already exists")
    r = _run("prune", run, "--out", other)
    _one_line_error(r, f"prune --out {other} already exists")
    assert _files(other) == before


def test_save_npy_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "sel.npy"
    save_npy(path, np.ones(5, bool))
    good = path.read_bytes()

    def killed(f, arr):  # a kill half-way through the write
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_npy(path, np.zeros(5, bool))
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["sel.npy"]  # no temporary left behind


def test_an_unwritable_out_is_found_before_any_work(fitted_small_run, small_scene_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = _run("fit", small_scene_dir, "--ply", small_scene_dir / "gaussians.ply", "--out", blocker / "run")
    _one_line_error(r, f"--out {blocker / 'run'}: {blocker} is a file, not a directory")
    r = _run("shape", fitted_small_run, "--masks", small_scene_dir / "masks", "--out", blocker / "shaped")
    _one_line_error(r, f"{blocker} is a file, not a directory")
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("kill_at", [0, 1, 2, 3])
def test_a_kill_inside_the_checkpoint_swap_leaves_the_old_or_the_new_version(tmp_path, monkeypatch, kill_at):
    """replace_dir_atomically renames three times (partial -> .new, target -> .old, .new -> target);
    a kill before any of them, or after the last, leaves a directory that
    finish_dir_replacement (what a resume calls first) turns into the old or the new version,
    never nothing, and no hidden leftovers."""
    import structgs.utils.io as io

    target = tmp_path / "checkpoint"
    io.replace_dir_atomically(target, lambda d: (d / "step").write_text("100"))
    calls = {"n": 0}
    real = os.replace

    def replace(a, b):
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        calls["n"] += 1
        real(a, b)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        io.replace_dir_atomically(target, lambda d: (d / "step").write_text("200"))
        raise KeyboardInterrupt  # kill_at 3: killed right after the swap
    monkeypatch.undo()
    io.finish_dir_replacement(target)
    assert (target / "step").read_text() == ("100" if kill_at == 0 else "200")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_resume_without_a_checkpoint_is_refused(small_scene_dir, tmp_path):
    from structgs.pipeline.fit import fit_run
    from structgs.training.config import FitConfig

    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="--resume: .* holds no fit checkpoint to resume from"):
        fit_run(small_scene_dir, tmp_path / "run", ply=small_scene_dir / "gaussians.ply",
                config=FitConfig(stage1_iters=5, stage2_iters=1), resume=True, device="cpu", progress=False)
    assert list((tmp_path / "run").iterdir()) == []


def test_the_cli_prints_input_errors_as_one_line_and_keeps_tracebacks_of_bugs(monkeypatch, capsys):
    import structgs.cli as cli
    from structgs.utils.errors import InputError

    def bad_input(args):
        raise InputError("--masks /x: masks directory does not exist")

    def bug(args):
        raise ValueError("operands could not be broadcast together")  # e.g. from numpy: a bug of ours

    monkeypatch.setattr(sys, "argv", ["structgs", "shape"])
    monkeypatch.setattr(cli, "app", bad_input)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2 and capsys.readouterr().err.strip() == "error: --masks /x: masks directory does not exist"
    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main()


def test_a_run_is_committed_by_its_config_json_written_last(tmp_path):
    """``commit_run`` writes a run's files first and its model's config.json last: a kill while
    the files are written leaves no config.json, and a reader refuses the unfinished run."""
    from structgs.decoder import DecoderConfig
    from structgs.model import SceneModel
    from structgs.pipeline.runs import Run, commit_run
    from structgs.utils.io import write_json

    model = SceneModel(DecoderConfig(position_frequencies=0), 5)
    run = tmp_path / "run"

    def killed(path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        commit_run(run, model, {"report.json": lambda p: write_json(p, {"ok": 1}), "labels.npy": killed})
    assert (run / "report.json").is_file() and not (run / "config.json").exists()
    with pytest.raises(FileNotFoundError, match="not a structgs run"):
        Run.open(run, device="cpu")
    (run / "checkpoint").mkdir()  # a job stopped after a checkpoint
    with pytest.raises(ValueError, match="unfinished run .* finish it with --resume"):
        Run.open(run, device="cpu")
    commit_run(run, model, {"report.json": lambda p: write_json(p, {"ok": 2})})
    assert SceneModel.from_pretrained(run).num_gaussians == 5


def test_the_checkpointer_guards_resume_and_round_trips_its_state(tmp_path):
    from structgs.decoder import DecoderConfig
    from structgs.model import SceneModel
    from structgs.training.loop import Checkpointer, TrainerState

    model = SceneModel(DecoderConfig(position_frequencies=0), 5)
    gen = torch.Generator().manual_seed(7)
    torch.rand(3, generator=gen)
    fit = Checkpointer(tmp_path / "run", "fit")
    fit.guard(resume=False)  # nothing there yet
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    fit.save(model, TrainerState("stage2", 12, gen.get_state(), {"stage2": opt.state_dict()}, {"pool": torch.arange(4)}))
    state = fit.load_state()
    assert (state.stage, state.step) == ("stage2", 12) and torch.equal(state.extra["pool"], torch.arange(4))
    restored = torch.Generator()
    restored.set_state(state.generator)
    assert torch.equal(torch.rand(5, generator=restored), torch.rand(5, generator=gen))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fit.load_model().state_dict().items())
    fit.guard(resume=True)
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        fit.guard(resume=False)
    assert fit.job() == {"kind": "fit", "stage": "stage2", "step": 12}  # read without loading the state
    with pytest.raises(ValueError, match="is not a shape checkpoint \\(it is 'fit'\\)"):
        Checkpointer(tmp_path / "run", "shape").guard(resume=True)
    (fit.path / "job.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"job\.json: invalid JSON"):
        fit.guard(resume=True)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_output_gets_the_mode_the_umask_asks_for(tmp_path, umask, mode):
    """Atomic writes go through 0600 temporary files; the result must still follow the umask
    like any file the user creates (a shared results directory must stay readable)."""
    import stat

    from structgs.decoder import DecoderConfig
    from structgs.model import SceneModel
    from structgs.utils.io import file_mode, write_json

    previous = os.umask(umask)
    try:
        assert file_mode() == mode
        write_json(tmp_path / "a.json", {"x": 1})
        save_npy(tmp_path / "b.npy", np.zeros(3))
        SceneModel(DecoderConfig(position_frequencies=0), 4).save_pretrained(tmp_path / "run")
    finally:
        os.umask(previous)
    written = [tmp_path / "a.json", tmp_path / "b.npy", *sorted((tmp_path / "run").iterdir())]
    assert len(written) == 4
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: mode for p in written}
