"""Filtered search: the ANN file with a faiss ID selector against exact search over the filter's rows.

For each selectivity (share of rows a filter lets through), the filter is a random subset of the
rows; the truth is the exact top-10 over that subset. Measured per query (p50 ms) and recall@10:
the search through a faiss `IDSelectorBitmap` (what the inverted file's `scan(query, rows)` does above
`app.vectors.SUBSET_EXACT` rows; with `--hnsw`, an older index's graph walk) and the exact scoring of
the subset (what they do at or below).

    .venv/bin/python -m bench.filtered --size 100000 --queries 50
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app import vectors
from app.layout import ANN_FILE
from app.options import SearchOptions
from app.pca import DEFAULT_DIM
from app.vectors import SubsetScan, VectorSearcher, build_ann, build_hnsw, open_ann, rank_exact
from bench.synthetic import recall, synthetic, timed

log = logging.getLogger("bench.filtered")
SELECTIVITIES = (0.5, 0.1, 0.05, 0.02, 0.01, 0.001)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000, help="rows in the synthetic index")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--nprobe", type=int, default=SearchOptions().nprobe, help="inverted-file cells")
    parser.add_argument("--ef-search", type=int, default=SearchOptions().ef_search, help="HNSW breadth")
    parser.add_argument("--hnsw", action="store_true", help="measure the HNSW graph older builds stored")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep the ANN file here and reuse it (default: a temporary folder)",
    )
    return parser.parse_args(argv)


def measure(
    searcher: VectorSearcher, matrix: np.ndarray, queries: np.ndarray, share: float
) -> dict[str, float]:
    """p50 ms and recall@10 of the selector search and of the exact subset scoring, for one selectivity."""
    rng = np.random.default_rng(int(share * 1e6))
    rows = np.sort(rng.choice(matrix.shape[0], max(10, int(share * matrix.shape[0])), replace=False))
    truth = [[row for row, _ in rank_exact(matrix, query, rows, 10)] for query in queries]
    saved = vectors.SUBSET_EXACT, vectors.HNSW_SUBSET_EXACT, vectors.SELECTOR_MIN_SHARE
    vectors.SUBSET_EXACT, vectors.HNSW_SUBSET_EXACT, vectors.SELECTOR_MIN_SHARE = 0, 0, 0.0  # the selector
    try:
        walked, walk_ms, _ = timed(lambda q: [r for r, _ in searcher.scan(q, rows).top(10)], queries)
    finally:
        vectors.SUBSET_EXACT, vectors.HNSW_SUBSET_EXACT, vectors.SELECTOR_MIN_SHARE = saved
    exact, exact_ms, _ = timed(lambda q: [r for r, _ in SubsetScan(matrix, q, rows).top(10)], queries)
    return {
        "rows": float(len(rows)),
        "ann_p50_ms": walk_ms,
        "ann_recall": recall(walked, truth),
        "exact_p50_ms": exact_ms,
        "exact_recall": recall(exact, truth),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Build the ANN file over synthetic vectors, then print one line per selectivity."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    matrix = synthetic(args.size, args.dim, "bridge", seed=1).astype(np.float16)
    queries = synthetic(args.queries, args.dim, "bridge", seed=2)
    with tempfile.TemporaryDirectory() as scratch:
        kind = "hnsw" if args.hnsw else "ivf"
        path = (args.work_dir or Path(scratch)) / f"{args.size}x{args.dim}-{kind}-{ANN_FILE}"
        if not path.is_file():  # a --work-dir keeps the file for the next run
            (build_hnsw if args.hnsw else build_ann)(matrix, path)
        searcher = open_ann(path, matrix, args.nprobe, args.ef_search)
        breadth = f"efSearch {args.ef_search}" if args.hnsw else f"nprobe {args.nprobe}"
        print(f"{args.size} rows, {args.dim} dimensions, {kind} {breadth}, {args.queries} queries")
        print("selectivity  rows      ann p50 ms   ann recall@10  exact p50 ms  exact recall@10")
        for share in SELECTIVITIES:
            found = measure(searcher, matrix, queries, share)
            print(
                f"{share:>10.1%}  {int(found['rows']):>7d}  {found['ann_p50_ms']:>11.2f}  "
                f"{found['ann_recall']:>14.3f}  {found['exact_p50_ms']:>12.2f}  "
                f"{found['exact_recall']:>15.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
