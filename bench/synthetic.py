"""Synthetic index vectors shaped like ours, and the timing and recall helpers the search benches share."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

Search = Callable[[np.ndarray], list[int]]
Q = TypeVar("Q")  # a query: a vector, a text
R = TypeVar("R")  # what a result names: a row, an id
# Mean and covariance of the vectors of the Tux Paint index built with the defaults (256-d; remade with
# bench.search --refit-stats INDEX_DIR from an index built as bench.relevance builds it): synthetic rows
# get our geometry.
STATS = Path(__file__).parent / "data" / "tuxpaint_vector_stats.npz"


def stats_dim() -> int:
    """The dimension of the vectors whose mean and covariance STATS holds."""
    with np.load(STATS) as stats:
        return int(stats["mean"].shape[0])


def synthetic(n: int, dim: int, kind: str, seed: int) -> np.ndarray:
    """Unit rows drawn like our index's vectors (fitted), as bridge-like mixtures, or uniformly."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    labels = np.random.default_rng(0).standard_normal((1000, dim)).astype(np.float32)
    if kind == "fitted":
        with np.load(STATS) as stats:
            mean, cov = stats["mean"], stats["cov"]
        if mean.shape[0] != dim:
            raise SystemExit(f"--data fitted has {mean.shape[0]} dimensions, not --dim {dim}")
        root = np.linalg.cholesky(cov + 1e-6 * np.eye(dim))
    step = 100_000
    for first in range(0, n, step):
        m = min(step, n - first)
        if kind == "fitted":
            block = (mean + rng.standard_normal((m, dim)) @ root.T).astype(np.float32)
        elif kind == "uniform":
            block = rng.standard_normal((m, dim)).astype(np.float32)
        else:
            chosen = rng.integers(0, 1000, (m, 5))
            weights = rng.dirichlet(np.full(5, 0.5), m).astype(np.float32)
            block = np.einsum("mk,mkd->md", weights, labels[chosen])
            block += 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
        out[first : first + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed(search: Callable[[Q], list[R]], queries: Iterable[Q]) -> tuple[list[list[R]], float, float]:
    """Results and p50/p99 milliseconds of one query at a time (after one warm-up query)."""
    queries = list(queries)
    search(queries[0])
    results: list[list[R]] = []
    times: list[float] = []
    for query in queries:
        start = time.perf_counter()
        results.append(search(query))
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return results, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall(found: Sequence[Sequence[Hashable]], truth: Sequence[Sequence[Hashable]]) -> float:
    """Mean share of the true top-10 found."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))
