"""One rich log handler on the "herd" logger, and a standard progress bar."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ROOT = "herd"
# stderr, so stage output piped from stdout stays clean; shared so bars and log lines do not collide.
console = Console(stderr=True)


def _configure() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(getattr(h, "_herd", False) for h in root.handlers):
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True)
        handler._herd = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        level = os.environ.get("HERD_LOG_LEVEL", "INFO").upper()
        root.setLevel(level if level in logging.getLevelNamesMapping() else logging.INFO)
    return root


def get_logger(name: str = ROOT) -> logging.Logger:
    """A logger under "herd" (names outside it are put under it), with the rich handler installed once."""
    _configure()
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    return logging.getLogger(name)


def progress(transient: bool = False) -> Progress:
    """A rich Progress: spinner, description, bar, M of N, elapsed, remaining."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )
