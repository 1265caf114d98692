"""Library logger. structgs never configures the root logger; the CLI attaches a rich handler."""

from __future__ import annotations

import logging

LOGGER_NAME = "structgs"


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the ``structgs`` logger or one of its children (``structgs.<name>``)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def setup_cli_logging(verbose: bool = False) -> None:
    """Attach a rich handler to the structgs logger (used by the CLI only)."""
    logger = logging.getLogger(LOGGER_NAME)
    if any(getattr(h, "_structgs_cli", False) for h in logger.handlers):
        return
    try:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
    except ImportError:  # pragma: no cover - rich is a core dependency
        handler = logging.StreamHandler()
    handler._structgs_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
