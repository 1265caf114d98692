"""Scale: the whole per-scene job on a generated scene, stage by stage, time and peak memory.

    python benchmarks/scale.py [--gaussians 100000 1000000] [--resolution 512] [--workdir /tmp/structgs-scale]

For each size, the built-in scene is generated with that many Gaussians and views of
``--resolution``², then every stage runs as its own ``structgs`` command (what a user types):

    fit --stage2-iters 0  (attribute regression only: the PLY is already trained)
    shape                 (lift the scene's id masks, 300 steps)
    segment               (one click on the first training view, shaped query)
    edit --op recolor     (from that selection)
    export                (the edited scene as an INRIA PLY)

and its wall time and peak resident memory (``/usr/bin/time``) are printed per stage, with how
each grows from the smallest size to the largest. Prints ``RESULT scale_peak_gb`` (the largest
peak of any stage at the largest size). Finished stages are kept in WORKDIR and skipped on a
re-run (delete the folder to measure again). The built-in scene takes 2000 to 5M Gaussians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

TIME = "/usr/bin/time"


def stage(name: str, cmd: list[str], done: Path, log: Path) -> dict:
    """Run one structgs command under /usr/bin/time unless ``done`` exists; its figures."""
    record = log.with_suffix(".json")
    if done.exists() and record.is_file():
        return json.loads(record.read_text())
    full = [TIME, "-f", "STAGE %e %M", sys.executable, "-m", "structgs.cli", *cmd]
    t0 = time.perf_counter()
    r = subprocess.run(full, capture_output=True, text=True)
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed (exit {r.returncode}), see {log}: "
                         f"{(r.stderr.strip().splitlines() or [''])[-2:]}")
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("STAGE ")][-1]
    seconds, kb = line.split()[1:]
    fig = {"stage": name, "seconds": float(seconds), "peak_gb": int(kb) / 2**20, "wall_s": time.perf_counter() - t0}
    record.write_text(json.dumps(fig))
    return fig


def click(scene: Path) -> tuple[str, int, int]:
    """A user's click on object 2 (the first object on the ground): its deepest pixel in the first
    training view where it lies 3 px inside (structgs eval's default prompt)."""
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.scene import load_dataset

    view, (x, y) = pick_target_pixel(load_dataset(scene), scene / "masks", 2, good_depth=3)
    return view, x, y


def run_size(n: int, resolution: int, root: Path) -> list[dict]:
    from structgs.data import SceneSpec, ensure_builtin_scene

    wd = root / f"n{n}-r{resolution}"
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scene = ensure_builtin_scene(wd / "scene", SceneSpec(num_gaussians=n, image_size=resolution), progress=False)
    print(f"{n} Gaussians, {resolution}^2: scene ready in {time.perf_counter() - t0:.0f} s", flush=True)
    view, x, y = click(scene)
    steps = [
        ("fit (stage 1)", ["fit", str(scene), "--ply", str(scene / "gaussians.ply"), "--out", str(wd / "fitted"),
                           "--stage2-iters", "0", "--checkpoint-every", "0"], wd / "fitted" / "config.json"),
        ("shape", ["shape", str(wd / "fitted"), "--masks", str(scene / "masks"), "--out", str(wd / "shaped")],
         wd / "shaped" / "config.json"),
        ("segment (one click)", ["segment", str(wd / "shaped"), "--view", view, "--pixel", str(x), str(y),
                                 "--out", str(wd / "selection.npy")], wd / "selection.npy"),
        ("edit (recolour)", ["edit", str(wd / "shaped"), "--op", "recolor", "--rgb", "0.9", "0.1", "0.1",
                             "--gaussians", str(wd / "selection.npy"), "--out", str(wd / "edited")],
         wd / "edited" / "config.json"),
        ("export", ["export", str(wd / "edited"), "--out", str(wd / "edited.ply")], wd / "edited.ply"),
    ]
    figs = []
    for name, cmd, done in steps:
        fig = stage(name, cmd, done, wd / f"{name.split()[0]}.log")
        figs.append(fig)
        print(f"  {name:<20} {fig['seconds']:8.1f} s  peak {fig['peak_gb']:6.2f} GB", flush=True)
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/structgs-scale"))
    args = ap.parse_args()
    bad = [n for n in args.gaussians if not 2000 <= n <= 5_000_000]
    if bad or args.resolution < 16:
        raise SystemExit(f"--gaussians must be 2000..5000000 (the built-in scene's range), got {bad}" if bad else
                         f"--resolution must be >= 16, got {args.resolution}")
    if shutil.which(TIME) is None:
        raise SystemExit(f"benchmarks/scale.py measures peak memory with {TIME}, which is not installed")
    results = {n: run_size(n, args.resolution, args.workdir) for n in sorted(args.gaussians)}
    sizes = sorted(results)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"growth from {small} to {large} Gaussians ({large / small:.1f}x):")
        for a, b in zip(results[small], results[large]):
            print(f"  {a['stage']:<20} time {b['seconds'] / max(a['seconds'], 1e-9):5.2f}x  "
                  f"peak {b['peak_gb'] / max(a['peak_gb'], 1e-9):5.2f}x")
    print(f"RESULT scale_peak_gb {max(f['peak_gb'] for f in results[sizes[-1]]):.2f}")


if __name__ == "__main__":
    main()
