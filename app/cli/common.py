"""What the `imgsearch` commands share: log format, settings, argument types and the one-line error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.settings import Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fail(message: object) -> int:
    """Print `error: <message>` on stderr as one line; the exit status of a failed command."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


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
