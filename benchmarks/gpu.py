"""The GPU checks in one command (a few minutes on one GPU): parity and timings of the CUDA paths.

    python benchmarks/gpu.py [--out gpu_figures] [--sizes 30000 100000 1000000] [--resolutions 128 512]

Writes OUT.json (every figure) and OUT.md (the same as tables), atomically, and prints them:

1. parity: the CUDA tests (``pytest -m cuda``): gsplat against the torch rasterizer (image, alpha
   and every gradient on a saturating scene), the tinycudann trunk (decode, Jacobian deltas);
2. rasterizer: the torch backend on CUDA and gsplat, forward and forward + backward, per size
   and resolution (benchmarks/render.py's worker, one process each, median of 3, peak memory);
3. decoder: decode + backward of N Gaussians with the torch trunk and, if installed, tinycudann;
4. shaped query at the largest size on the GPU: one pass over the activation cache vs a bare
   matrix-vector product over the same matrix (benchmarks/query.py's measure).

Each step has a time limit (--step-timeout) so that the whole run stays bounded; a step that
fails or times out is recorded as such and the rest still run. Without CUDA it stops at once
with one line (exit 2). It has not yet run on a GPU: no session so far was lent one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _median(fn, sync, repeats: int = 5) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def parity(timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider", str(HERE.parent / "tests")]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"status": "timed out"}
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip()]
    return {"status": "passed" if r.returncode == 0 else "failed", "summary": lines[-1] if lines else "",
            "skipped": [ln for ln in lines if ln.startswith("SKIPPED")], "tail": lines[-30:] if r.returncode else []}


def rasterizer(sizes: list[int], resolutions: list[int], timeout: float) -> list[dict]:
    rows = []
    for backend in ("torch", "gsplat"):
        for n in sizes:
            for res in resolutions:
                cmd = [sys.executable, str(HERE / "render.py"), "--one", f"{n},{res},{backend},cuda"]
                try:
                    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                except subprocess.TimeoutExpired:
                    rows.append({"backend": backend, "n": n, "res": res, "error": f"over {timeout:.0f} s"})
                    continue
                if r.returncode:
                    err = (r.stderr.strip().splitlines() or ["failed"])[-1]
                    rows.append({"backend": backend, "n": n, "res": res, "error": err})
                    continue
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def decoder(n: int, device: str = "cuda") -> list[dict]:
    import torch

    from structgs.decoder import DecoderConfig
    from structgs.model import SceneModel

    rows = []
    for backend in ("torch", "tcnn"):
        try:
            m = SceneModel(DecoderConfig(backend=backend, hidden_width=64), n).to(device)
        except ImportError as e:
            rows.append({"backend": backend, "n": n, "error": str(e).splitlines()[0]})
            continue
        with torch.no_grad():
            m.centroids.normal_()
            m.latents.normal_()

        def step():
            s = m.decode()
            (s.colors.sum() + s.opacities.sum() + s.scales.sum()).backward()

        sync, cuda = _sync(device), device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            forward = _median(lambda: m.decode(), sync)
        both = _median(step, sync)
        rows.append({"backend": backend, "n": n, "decode_s": forward, "decode_backward_s": both,
                     "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def query(n: int, device: str = "cuda") -> dict:
    import torch

    from structgs.decoder import DecoderConfig
    from structgs.edit.jacobian import activation_cache, default_segmentation_branch, jacobian_cosine
    from structgs.model import SceneModel

    torch.manual_seed(0)
    layout = DecoderConfig()
    m = SceneModel(DecoderConfig(side_width=64, side_branches=layout.branches, side_norm=8.0), n).to(device)
    sync = _sync(device)
    with torch.no_grad():
        m.centroids.uniform_(-1, 1)
        m.latents.normal_()
    sel = torch.zeros(n, dtype=torch.bool, device=device)
    sel[: max(1, n // 100)] = True
    recompute = _median(lambda: jacobian_cosine(m, sel, use_cache=False), sync)
    activation_cache(m, default_segmentation_branch(m))
    cached = _median(lambda: jacobian_cosine(m, sel), sync)
    unit = activation_cache(m, default_segmentation_branch(m)).unit
    direction = torch.nn.functional.normalize(torch.randn(unit.shape[1], device=device), dim=0).to(unit.dtype)
    matvec = _median(lambda: unit @ direction, sync)
    row = {"n": n, "recompute_s": recompute, "cached_s": cached, "matvec_s": matvec, "cached_vs_matvec": cached / matvec}
    print(json.dumps(row), flush=True)
    return row


def markdown(fig: dict) -> str:
    out = [f"# structgs GPU figures ({fig['device']}, torch {fig['torch']}, gsplat {fig['gsplat']}, "
           f"tinycudann {fig['tinycudann']})", "", f"parity (`pytest -m cuda`): {fig['parity'].get('status')} "
           f"{fig['parity'].get('summary', '')}", "", "| backend | N | res | forward s | fwd+bwd s | peak MB |",
           "|---|---|---|---|---|---|"]
    for r in fig["rasterizer"]:
        out.append(f"| {r['backend']} | {r['n']} | {r['res']} | " + (f"{r['forward_s']:.4f} | {r['forward_backward_s']:.4f} | "
                   f"{r['peak_mb']:.0f} |" if "error" not in r else f"{r['error']} | | |"))
    out += ["", "| decoder trunk | N | decode s | decode + backward s | peak MB |", "|---|---|---|---|---|"]
    for r in fig["decoder"]:
        out.append(f"| {r['backend']} | {r['n']} | " + (f"{r['decode_s']:.4f} | {r['decode_backward_s']:.4f} | "
                   f"{r['peak_mb']:.0f} |" if "error" not in r else f"{r['error']} | | |"))
    q = fig["query"]
    if "error" in q:
        out += ["", f"shaped query: {q['error']}"]
    else:
        out += ["", f"shaped query at {q['n']}: recomputed {q['recompute_s'] * 1000:.2f} ms, cached "
                f"{q['cached_s'] * 1000:.2f} ms, bare matvec {q['matvec_s'] * 1000:.3f} ms "
                f"({q['cached_vs_matvec']:.2f}x)"]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu_figures"), help="writes OUT.json and OUT.md")
    ap.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000, 1_000_000])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--step-timeout", type=float, default=120.0, help="seconds for each step's process")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"benchmarks/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__})",
              file=sys.stderr)
        raise SystemExit(2)
    sys.path.insert(0, str(HERE.parent))
    from structgs.utils.io import atomic_write, ensure_writable_dir, write_json

    ensure_writable_dir(args.out.resolve().parent, "--out")

    def version(name: str) -> str:
        try:
            return getattr(__import__(name), "__version__", "installed")
        except ImportError:
            return "not installed"

    fig: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "gsplat": version("gsplat"),
                 "tinycudann": version("tinycudann")}
    t0 = time.perf_counter()
    fig["parity"] = parity(args.step_timeout * 2)
    print("parity:", fig["parity"].get("status"), fig["parity"].get("summary", ""), flush=True)
    fig["rasterizer"] = rasterizer(args.sizes, args.resolutions, args.step_timeout)
    largest = max(args.sizes)
    for name, work in (("decoder", lambda: decoder(largest)), ("query", lambda: query(largest))):
        try:
            fig[name] = work()
        except Exception as e:  # noqa: BLE001 - recorded in the figures, the other steps still run
            fig[name] = [{"backend": "torch", "n": largest, "error": repr(e)}] if name == "decoder" else {"error": repr(e)}
    fig["seconds"] = time.perf_counter() - t0
    write_json(args.out.with_suffix(".json"), fig)
    text = markdown(fig)
    atomic_write(args.out.with_suffix(".md"), lambda p: p.write_text(text))
    print(text + f"written: {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')} ({fig['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
