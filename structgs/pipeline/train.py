"""``train.py``: fit, then (with --masks) shape, in one command."""

from __future__ import annotations

import sys

import typer

from structgs.cli import fit as fit_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command(help="Fit the decoder to a scene (and shape it when --masks is given).")(fit_command)
    from structgs.cli import main as cli_main  # same error handling as the CLI

    sys.argv = [sys.argv[0], *sys.argv[1:]]
    try:
        from structgs.utils.log import setup_cli_logging

        setup_cli_logging()
        app()
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
    del cli_main
