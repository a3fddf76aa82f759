"""Build an index from a folder of images or a Hugging Face dataset: read → encode → write."""

from __future__ import annotations

import argparse
import logging
import sys

from app.cli import LOG_FORMAT, add_build_arguments, check_build_arguments, run_build


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the same as `imgsearch build`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_build_arguments(parser)
    args = parser.parse_args(argv)
    check_build_arguments(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run a build; exit status 1 with one clear line on failure."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return run_build(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
