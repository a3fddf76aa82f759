"""Query an index from the command line, without the service: rank, score, id, source."""

from __future__ import annotations

import sys

from app.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Print the top results of one query (the same as `imgsearch search`)."""
    return cli_main(["search", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
