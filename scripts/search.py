"""Query an index from the command line, without the service: rank, score, id, source."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.errors import ImgSearchError
from app.index import Index
from app.registry import prepare
from app.service import SearchService
from app.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Print the top results of one query."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("query")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    try:
        index = Index(args.index_dir)
        models = prepare(settings, index.profile, with_lm=False)
        service = SearchService(index, models, settings.cache_dir)
        hits = service.search_text(args.query, max(1, args.top_k))
    except ImgSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:3d}  {hit.score:.4f}  {hit.record.id}  {hit.record.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
