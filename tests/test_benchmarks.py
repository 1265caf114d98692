"""The benchmark scripts' own contracts (their figures are measured by running them, not here)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_benchmark_refuses_without_cuda_before_any_work(tmp_path):
    r = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--out", str(tmp_path / "figures")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "needs a CUDA GPU" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_benchmark_scripts_import_what_exists():
    """Every `from structgs... import ...` in the benchmarks names something that exists (two
    scripts had kept imports of helpers that a refactor had moved)."""
    import ast
    import importlib

    for script in sorted(BENCHMARKS.glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("structgs"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                        f"{script.name}: {node.module} has no {alias.name}"
