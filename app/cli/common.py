"""What the `imgsearch` commands share: log format, settings, argument types and the one-line error."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from app.settings import Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
INTERRUPTED = 130  # the status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


def fail(message: object) -> int:
    """Print `error: <message>` on stderr as one line; the exit status of a failed command."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def interrupted(message: str) -> int:
    """Print `interrupted: <message>` on stderr as one line (Ctrl-C); the exit status to return."""
    print(f"interrupted: {message}", file=sys.stderr)
    return INTERRUPTED


def models_loaded() -> None:
    """Freeze what is alive once a build command has loaded its models (they live until it exits):
    the collector then skips them, so forked decode workers copy fewer pages, and the exit (after
    Ctrl-C too) spares a last collection over them, seconds of teardown with torch loaded. Garbage
    is collected first, so that none is kept for good."""
    gc.collect()
    gc.freeze()


def command_settings(index_dir: Path | None) -> Settings:
    """Settings from the environment, with the index directory given on the command line (BadSetting)."""
    return load_settings(index_dir=index_dir) if index_dir is not None else load_settings()


def positive(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value
