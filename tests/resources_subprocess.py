"""Open, search and close an index many times in one process (`python -m tests.resources_subprocess`).

Each round opens the index as the service does, runs hybrid searches with and without a filter (so
the catalog's columns, its kept selections and both thread pools are used) and closes it. Prints one
JSON line: the Python threads and open file descriptors before the first round and after the last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
from pathlib import Path

from app.assembly import service_over
from app.filters import Filters
from app.index import Index
from app.query import CompoundQuery
from app.service import SearchRequest
from tests.fakes import fake_models

QUERIES = ("green thing", "a bright red picture")  # over the gallery of tests/conftest.py


def usage() -> tuple[int, int]:
    """Python threads alive and file descriptors open in this process, once nothing unused is kept
    (a closed index's memory maps hold their files until its arrays are garbage)."""
    gc.collect()
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def main() -> None:
    """Warm the models, then open, search and close the index `--rounds` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    models = fake_models()
    warm = service_over(Index(args.index_dir), models, args.cache_dir)  # models and caches, made once
    warm.pipeline.encode_query(QUERIES[0])
    warm.close()
    del warm
    before = usage()
    searched = 0
    for _ in range(args.rounds):
        service = service_over(Index(args.index_dir), models, args.cache_dir)
        for text in QUERIES:
            for filters in (Filters(), Filters.parse(path_prefix="SUB", formats=["jpg", "webp"])):
                searched += len(service.search(SearchRequest(CompoundQuery.build(text), filters)).hits)
        service.close()
    del service
    print(json.dumps({"before": before, "after": usage(), "results": searched}))


if __name__ == "__main__":
    main()
