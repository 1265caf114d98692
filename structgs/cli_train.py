"""``train.py``: the whole per-scene job in one command: fit, then (with --masks) shape.

It sits at the CLI layer (it runs the ``structgs fit`` command itself), so every option of
``structgs fit`` is accepted as is; ``--masks``, ``--shaped-out``, ``--association`` and
``--shape-iters`` are train.py's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer


def main(argv: list[str] | None = None) -> None:
    from structgs.cli import app as cli_app
    from structgs.shaping.config import ShapeConfig
    from structgs.pipeline.shape import shape_run
    from structgs.utils.errors import StructGSError
    from structgs.utils.log import setup_cli_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--masks", type=Path, default=None)
    ap.add_argument("--shaped-out", type=Path, default=None)
    ap.add_argument("--association", choices=["tracked", "overlap", "none"], default="tracked")
    ap.add_argument("--shape-iters", type=int, default=800)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true")
    own, rest = ap.parse_known_args(argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__.strip() + "\n\ntrain.py's own options: --masks DIR  --shaped-out DIR  --association "
              "tracked|overlap|none  --shape-iters N\n\nThe fit options:")
    fit_args = ["fit", *rest]
    if own.out is not None:
        fit_args += ["--out", str(own.out)]
    fit_args += ["--device", own.device] + (["--resume"] if own.resume else [])
    setup_cli_logging()
    try:
        cli_app(args=fit_args, standalone_mode=False)
        if own.masks is not None and own.out is not None:
            target = own.shaped_out or own.out.with_name(own.out.name + "-shaped")
            report = shape_run(own.out, own.masks, target,
                               ShapeConfig(association=own.association, iters=own.shape_iters),
                               device=own.device, resume=own.resume)
            typer.echo(f"shaped {target}: test PSNR {report['psnr_before']:.2f} -> {report['psnr_after']:.2f} dB, "
                       f"touched {report['fraction_touched']:.1%}")
    except StructGSError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
    except SystemExit as e:
        if e.code not in (0, None):
            raise
