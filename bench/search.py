"""Search at scale: exact vs ANN (our inverted file; faiss, usearch HNSW) over synthetic float16 unit rows."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.index import VECTORS
from app.layout import ANN_FILE
from app.options import SearchOptions
from app.pca import DEFAULT_DIM
from app.vectors import ExactSearcher, HnswSearcher, IvfSearcher, build_ann, build_hnsw, read_ann
from bench import collection
from bench.synthetic import STATS, recall, synthetic, timed

log = logging.getLogger("bench.search")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated index sizes")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--nprobe",
        default=f"16,32,64,{SearchOptions().nprobe},128",
        help="inverted-file cells probed (comma-separated); the RESULT line uses the service default",
    )
    parser.add_argument(
        "--ef-search",
        default=f"64,128,256,{SearchOptions().ef_search}",
        help="HNSW breadths at query time (comma-separated), for the comparison",
    )
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW comparisons (faiss, usearch)")
    parser.add_argument(
        "--data",
        choices=["fitted", "bridge", "uniform"],
        default="fitted",
        help="fitted: a Gaussian with the mean and covariance of the Tux Paint index's vectors "
        f"({STATS.name}); bridge: mixtures of 5 of 1000 random directions; uniform: on the sphere",
    )
    parser.add_argument("--no-usearch", action="store_true", help="skip the usearch comparison")
    parser.add_argument(
        "--filtered",
        action="store_true",
        help="instead: filtered and hybrid search through the service over a grown collection "
        "(bench/collection.py; the index is kept in --work-dir and reused)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where the .npy files go (default: tmp)")
    parser.add_argument("--refit-stats", type=Path, default=None, help="rewrite the stats from this index")
    return parser.parse_args(argv)


def baseline_search(matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """The first implementation: float16 chunks converted to float32, then argpartition."""
    scores = np.empty(matrix.shape[0], dtype=np.float32)
    for first in range(0, matrix.shape[0], 65536):
        scores[first : first + 65536] = np.asarray(matrix[first : first + 65536], dtype=np.float32) @ query
    top = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def usearch_index(matrix: np.ndarray, ef_search: int) -> tuple[Any, float]:
    """A usearch HNSW (f16 storage, inner product, same M and ef as ours) and its build seconds."""
    module = importlib.import_module("usearch.index")
    start = time.perf_counter()
    index = module.Index(
        ndim=matrix.shape[1],
        metric="ip",
        dtype="f16",
        connectivity=32,
        expansion_add=80,
        expansion_search=ef_search,
    )
    index.add(np.arange(matrix.shape[0]), matrix, threads=2)
    return index, time.perf_counter() - start


def usearch_top(index: Any, query: np.ndarray) -> list[int]:
    """Rows of a usearch index's top 10."""
    return [int(key) for key in index.search(query, 10).keys]


def top_rows(searcher: IvfSearcher | HnswSearcher, query: np.ndarray) -> list[int]:
    """Rows of the top 10."""
    return [row for row, _ in searcher.search(query, 10)]


def efs(args: argparse.Namespace) -> list[int]:
    """The HNSW breadths to measure, in increasing order."""
    return sorted({int(v) for v in str(args.ef_search).split(",")})


def probes(args: argparse.Namespace) -> list[int]:
    """The inverted-file probe counts to measure, in increasing order."""
    return sorted({int(v) for v in str(args.nprobe).split(",")} | {SearchOptions().nprobe})


def measured(
    key: str, search: Callable[[np.ndarray], list[int]], queries: np.ndarray, truth: list[list[int]]
) -> dict[str, float]:
    """p50 / p99 ms and recall@10 of one method, keyed as `report` reads them."""
    found, p50, p99 = timed(search, queries)
    return {f"{key}_p50": p50, f"{key}_p99": p99, f"{key}_recall": recall(found, truth)}


def run_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Every method at one size; returns the figures."""
    vectors = synthetic(n, args.dim, args.data, seed=n)
    queries = synthetic(args.queries, args.dim, args.data, seed=n + 1)
    path = work / f"vectors-{n}.npy"
    np.save(path, vectors.astype(np.float16))
    del vectors
    matrix = np.load(path, mmap_mode="c")
    exact = ExactSearcher(matrix)
    truth, exact_p50, exact_p99 = timed(lambda q: [r for r, _ in exact.search(q, 10)], queries)
    base_queries = queries[: max(20, args.queries // 10)]
    _, base_p50, base_p99 = timed(lambda q: baseline_search(matrix, q, 10), base_queries)
    ivf_seconds = build_ann(matrix, work / ANN_FILE)
    row = {
        "n": float(n),
        "baseline_p50": base_p50,
        "baseline_p99": base_p99,
        "exact_p50": exact_p50,
        "exact_p99": exact_p99,
        "ivf_build_s": ivf_seconds,
        "ivf_bytes": float((work / ANN_FILE).stat().st_size),
    }
    ivf = read_ann(work / ANN_FILE, n)
    for nprobe in probes(args):
        row |= measured(f"ivf{nprobe}", partial(top_rows, IvfSearcher(ivf, matrix, nprobe)), queries, truth)
    del ivf
    (work / ANN_FILE).unlink()
    if args.no_hnsw:
        path.unlink()
        return row
    row["faiss_build_s"] = build_hnsw(matrix, work / ANN_FILE)
    graph = read_ann(work / ANN_FILE, n)
    for ef in efs(args):
        row |= measured(f"faiss{ef}", partial(top_rows, HnswSearcher(graph, matrix, ef)), queries, truth)
    del graph
    if not args.no_usearch:
        try:
            index, seconds = usearch_index(np.asarray(matrix), 64)
        except ImportError:
            log.warning("usearch is not installed: skipped")
        else:
            row["usearch_build_s"] = seconds
            for ef in efs(args):
                index.expansion_search = ef
                row |= measured(
                    f"usearch{ef}", lambda q: [int(k) for k in index.search(q, 10).keys], queries, truth
                )
    path.unlink()
    (work / ANN_FILE).unlink()
    return row


def cells(row: dict[str, float], key: str) -> list[str]:
    """One method's "p50 / p99" and recall@10 cells of a size's row."""
    return [f"{row[f'{key}_p50']:.2f} / {row[f'{key}_p99']:.2f}", f"{row[f'{key}_recall']:.3f}"]


def report(rows: list[dict[str, float]], args: argparse.Namespace) -> None:
    """Print the tables and the RESULT line."""
    print(
        "| n | baseline exact p50 / p99 | exact p50 / p99 | build s: inverted file / faiss HNSW / usearch |"
    )
    for r in rows:
        builds = [
            r["ivf_build_s"],
            r.get("faiss_build_s", float("nan")),
            r.get("usearch_build_s", float("nan")),
        ]
        print(
            f"| {int(r['n']):,} | {r['baseline_p50']:.1f} / {r['baseline_p99']:.1f} "
            f"| {r['exact_p50']:.1f} / {r['exact_p99']:.1f} | "
            + " / ".join(f"{b:.0f}" for b in builds)
            + " |"
        )
    print("\n| n | inverted file nprobe | p50 / p99 | recall@10 |")
    for r in rows:
        for nprobe in probes(args):
            print(f"| {int(r['n']):,} | {nprobe} | " + " | ".join(cells(r, f"ivf{nprobe}")) + " |")
    if not args.no_hnsw:
        print("\n| n | efSearch | faiss HNSW p50 / p99 | recall@10 | usearch p50 / p99 | usearch recall@10 |")
        for r in rows:
            for ef in efs(args):
                found = cells(r, f"faiss{ef}") + (cells(r, f"usearch{ef}") if f"usearch{ef}_p50" in r else [])
                print(f"| {int(r['n']):,} | {ef} | " + " | ".join(found) + " |")
    last, nprobe = rows[-1], SearchOptions().nprobe
    print(
        f"RESULT search n={int(last['n'])} exact_p50_ms={last['exact_p50']:.1f} "
        f"ann_p50_ms={last[f'ivf{nprobe}_p50']:.2f} ann_recall10={last[f'ivf{nprobe}_recall']:.3f} "
        f"baseline_p50_ms={last['baseline_p50']:.1f} nprobe={nprobe}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size and print a table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.refit_stats:
        vectors = np.asarray(np.load(args.refit_stats / VECTORS), dtype=np.float64)
        np.savez(STATS, mean=vectors.mean(axis=0), cov=np.cov(vectors.T), count=np.array(len(vectors)))
        print(f"wrote {STATS}: {vectors.shape[1]}-d, {len(vectors)} vectors")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.filtered:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="imgsearch-collection-"))
        for n in sizes:
            collection.run(n, args.queries, work)
        return 0
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for n in sizes:
            log.info("size %d", n)
            rows.append(run_size(n, args, Path(tmp)))
            print(" ".join(f"{k}={v:.4g}" for k, v in rows[-1].items()), flush=True)
    print(f"\ndata={args.data} dim={args.dim} queries={args.queries} (ms per query, one query at a time)")
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
