"""Threading defaults for shared cores: passive OpenMP waits set before torch starts, thread
count from the affinity mask or --threads."""

import math
import os
import subprocess
import sys

import pytest
import torch

from structgs.utils.threads import available_cores, configure_threads, cpu_quota, prefer_passive_waiting


def test_thread_count_follows_the_affinity_mask_and_the_option(monkeypatch):
    before = torch.get_num_threads()
    try:
        if hasattr(os, "sched_getaffinity") and cpu_quota() is None:
            assert available_cores() == len(os.sched_getaffinity(0))
            monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # e.g. `taskset -c 0`
            assert available_cores() == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert configure_threads() == available_cores()
        assert configure_threads(2) == 2 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads() == 1
        with pytest.raises(ValueError, match="--threads must be >= 1, got 0"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
    ({}, None),
    ({"cpu.max": "garbage\n"}, None),
])
def test_a_cgroup_cpu_quota_caps_the_thread_count(tmp_path, monkeypatch, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a big host...
        # ...whose container may use 1.5 cores: 2 threads, not 64
        assert available_cores(tmp_path) == (64 if quota is None else math.ceil(quota))


def test_passive_waiting_is_a_default_the_user_can_override(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)  # monkeypatch restores what the calls set
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert not prefer_passive_waiting() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")  # a spin count alone is a choice too
    assert not prefer_passive_waiting() and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert prefer_passive_waiting()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["GOMP_SPINCOUNT"] == "10000"


def test_the_cli_sets_passive_waits_before_torch_starts_and_applies_threads(tmp_path):
    code = ("import os, sys\n"
            "from structgs import cli\n"
            "assert 'torch' not in sys.modules\n"
            "sys.argv = ['structgs', '--threads', '1', 'export', 'no-such-run', '--out', 'x.ply']\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    assert e.code == 2\n"
            "import torch\n"
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'], torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["PASSIVE", "10000", "1"]
    assert "no-such-run" in r.stderr  # the command itself ran (and failed on its input, one line)
