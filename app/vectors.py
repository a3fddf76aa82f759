"""Stage 5b: nearest-neighbour search over the index's vectors — exact, ANN (faiss HNSW) or a vector store.

Filtered search (`scan(query, rows)`): only the given rows are ranked, inside the search, so a page
is full whenever enough rows pass. The exact searcher scores just those rows. The HNSW graph walks
with a faiss ID selector, except for a subset of at most `SUBSET_EXACT` rows or under
`SELECTOR_MIN_SHARE` of the index, which is scored exactly: a walk that must skip most of the graph
loses recall, and scoring a few thousand rows costs a few milliseconds (bench/filtered.py,
docs/performance.md). Either way the candidates are ranked by the same float32
cosine (`rank_exact`), so every backend returns the same rows in the same order.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.errors import IndexUnavailable

log = logging.getLogger(__name__)

ANN_FILE = "ann.faiss"
SUBSET_EXACT = 20_000  # filtered searches over at most this many rows score them all exactly
# The HNSW walk with an ID selector keeps recall@10 ≥ 0.95 only while the filter passes at least
# this share of the rows (bench/filtered.py, 100,000 rows: 0.977 at 5 %, 0.887 at 2 %, 0.783 at 1 %).
SELECTOR_MIN_SHARE = 0.05
# A filtered walk searches this many times efSearch: at 1 M vectors, efSearch 512 kept recall@10 at
# 0.95 (50 % and 10 % of the rows passing), 1,024 at 0.98–0.99 for 2–5 ms (bench/collection.py).
FILTERED_EF_FACTOR = 2
Hits = list[tuple[int, float]]  # (row, cosine) pairs, best first


class Scan(Protocol):
    """One query's ranking over a searcher's rows, read best first to any depth."""

    def top(self, k: int) -> Hits:
        """The best k (row, cosine) pairs; at most k, fewer only when the rows run out."""
        ...


class VectorSearcher(Protocol):
    """Top-k by inner product (cosine on unit rows) over one matrix of vectors."""

    kind: str

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Scan:
        """The ranking by `query` of every row, or of `rows` only: one vector search, read to any depth."""
        ...

    def search(self, query: np.ndarray, k: int) -> Hits:
        """(row, score) pairs, best first, at most k; scores are float32 cosines."""
        ...

    def close(self) -> None:
        """Release what the searcher holds."""
        ...


class Rescan:
    """The scan of a searcher that cannot resume (a graph, a vector store): a deeper read searches wider."""

    def __init__(self, search: Callable[[np.ndarray, int], Hits], query: np.ndarray) -> None:
        self._search, self._query = search, query
        self._depth = 0
        self._found: Hits = []

    def top(self, k: int) -> Hits:
        """The first k of the deepest search so far, searching again only past its depth."""
        if k > self._depth and len(self._found) == self._depth:
            self._found, self._depth = self._search(self._query, k), k
        return self._found[:k]


def read_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """matrix[rows] as float32 in the given order, read in ascending row order (kind to a memmap)."""
    order = np.argsort(rows)
    out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
    out[order] = np.asarray(matrix[rows[order]], dtype=np.float32)
    return out


def rank_exact(matrix: np.ndarray, query: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Score candidate rows in float32 and rank them by (score desc, row asc)."""
    rows = np.unique(rows)
    scores = np.asarray(matrix[rows], dtype=np.float32) @ query.astype(np.float32)
    order = np.lexsort((rows, -scores))[:k]
    # float16 storage can push a perfect match a hair above 1: report cosines in [-1, 1].
    clipped = np.clip(scores[order], -1.0, 1.0)
    return list(zip(rows[order].tolist(), clipped.tolist(), strict=True))


class SubsetScan:
    """A filter's rows scored once; each read ranks its best in float32, by (score desc, row asc).

    Like `ExactScan`: a float16 product (torch) over the gathered rows chooses a pool of 2k + 32
    candidates, which float32 then ranks (`rank_exact`); converting every row to float32 would cost
    several times more than the product itself.
    """

    def __init__(self, matrix: np.ndarray, query: np.ndarray, rows: np.ndarray) -> None:
        self._matrix, self._query = matrix, query
        self._rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._scores: np.ndarray | None = None

    def _score(self) -> np.ndarray:
        """Approximate scores of every row of the subset (float16 product when the matrix is float16)."""
        gathered = np.asarray(self._matrix[self._rows])
        if gathered.dtype != np.float16:
            return np.asarray(gathered, dtype=np.float32) @ self._query.astype(np.float32)
        import torch

        with torch.inference_mode():
            product = torch.from_numpy(gathered) @ torch.from_numpy(self._query.astype(np.float16))
        return np.asarray(product.float().numpy())

    def top(self, k: int) -> Hits:
        """The best k of the rows."""
        n = len(self._rows)
        k = min(k, n)
        if k <= 0:
            return []
        if self._scores is None:
            self._scores = self._score()
        pool = min(n, 2 * k + 32)
        chosen = np.argpartition(-self._scores, pool - 1)[:pool] if pool < n else np.arange(n)
        return rank_exact(self._matrix, self._query, self._rows[chosen], k)


def _faiss() -> Any:
    """faiss, imported on first use (its stubs lag its API)."""
    return importlib.import_module("faiss")


class ExactScan:
    """Every row scored once (a float16 product over the memory map); each read ranks its best in float32."""

    def __init__(self, matrix: np.ndarray, tensor: Any, query: np.ndarray) -> None:
        self._matrix, self._tensor, self._query = matrix, tensor, query
        self._scores: Any = None  # computed by the first read that needs them
        self._everything: Hits | None = None  # the whole ranking, once a read reaches most rows

    def top(self, k: int) -> Hits:
        """Exact top-k; float16 scores choose a candidate pool that float32 then ranks."""
        n = self._matrix.shape[0]
        k = min(k, n)
        if k <= 0:
            return []
        if self._everything is not None:
            return self._everything[:k]
        if self._tensor is None or self._matrix.dtype != np.float16:
            if self._scores is None:
                self._scores = np.asarray(self._matrix, dtype=np.float32) @ self._query.astype(np.float32)
            pool = np.argpartition(-self._scores, k - 1)[:k] if k < n else np.arange(n)
            return rank_exact(self._matrix, self._query, pool, k)
        if n <= 2 * k + 32:
            self._everything = rank_exact(self._matrix, self._query, np.arange(n), n)
            return self._everything[:k]
        import torch

        with torch.inference_mode():
            if self._scores is None:
                self._scores = self._tensor @ torch.from_numpy(self._query.astype(np.float16))
            pool = torch.topk(self._scores, 2 * k + 32, sorted=False).indices.numpy()
        return rank_exact(self._matrix, self._query, pool, k)


class ExactSearcher:
    """Every row scored: one float16 matrix-vector product over the memory map, then a float32 re-rank."""

    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        import torch

        self.matrix = matrix
        # A copy-on-write map is writable as far as torch can tell, so it wraps it without a copy.
        self._tensor: Any = torch.from_numpy(matrix) if matrix.flags.writeable else None

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> ExactScan | SubsetScan:
        """Score every row (or only `rows`) once; reads of any depth rank from those scores."""
        if rows is not None:
            return SubsetScan(self.matrix, query, rows)
        return ExactScan(self.matrix, self._tensor, query)

    def search(self, query: np.ndarray, k: int) -> Hits:
        """Exact top-k."""
        return self.scan(query).top(k)

    def close(self) -> None:
        """Nothing to release (the map belongs to the index)."""


class HnswSearcher:
    """faiss HNSW graph built by the batch script; candidates re-ranked exactly against the matrix."""

    kind = "hnsw"

    def __init__(self, path: Path, matrix: np.ndarray, ef_search: int) -> None:
        faiss = _faiss()
        self.matrix = matrix
        self._index: Any = faiss.read_index(str(path))
        if self._index.ntotal != matrix.shape[0]:
            raise IndexUnavailable(
                f"{path} holds {self._index.ntotal} vectors but the index has {matrix.shape[0]}; rebuild it"
            )
        self._ef = ef_search

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Rescan | SubsetScan:
        """The graph's ranking (of `rows` only, when given); a deeper read walks the graph again, wider."""
        if rows is None:
            return Rescan(self.search, query)
        if len(rows) <= SUBSET_EXACT or len(rows) < SELECTOR_MIN_SHARE * self.matrix.shape[0]:
            return SubsetScan(self.matrix, query, rows)
        selector = _Bitmap(rows, self.matrix.shape[0])
        return Rescan(lambda q, k: self._walk(q, min(k, len(rows)), selector.selector), query)

    def search(self, query: np.ndarray, k: int) -> Hits:
        """Approximate top-k (efSearch grows with k so deep pages stay complete)."""
        return self._walk(query, min(k, self.matrix.shape[0]), None)

    def _walk(self, query: np.ndarray, k: int, selector: Any) -> Hits:
        """The graph's top-k among the rows `selector` lets through (all rows when None)."""
        if k <= 0:
            return []
        faiss = _faiss()
        params = faiss.SearchParametersHNSW(efSearch=max(self._ef, k))
        if selector is not None:  # a walk that skips nodes needs a wider beam for the same recall
            params.efSearch = max(FILTERED_EF_FACTOR * self._ef, k)
            params.sel = selector
        _, rows = self._index.search(query.astype(np.float32)[None], k, params=params)
        found = rows[0][rows[0] >= 0]
        return rank_exact(self.matrix, query, found, k)

    def close(self) -> None:
        """Drop the graph."""
        self._index = None


class _Bitmap:
    """A faiss selector over a bitmap of the rows: one bit test per visited node (a hash set of
    500,000 rows costs more to build and to probe), the bits kept alive as long as the selector."""

    def __init__(self, rows: np.ndarray, count: int) -> None:
        mask = np.zeros(count, dtype=bool)
        mask[rows] = True
        self.bits = np.packbits(mask, bitorder="little")
        self.selector: Any = _faiss().IDSelectorBitmap(count, _faiss().swig_ptr(self.bits))


def build_ann(matrix: np.ndarray, path: Path, m: int = 32, ef_construction: int = 200) -> float:
    """Build an HNSW graph (float16 storage, inner product) over the matrix and write it; returns seconds."""
    faiss = _faiss()
    started = time.perf_counter()
    dim = matrix.shape[1]
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    step = 100_000
    index.train(np.asarray(matrix[:step], dtype=np.float32))
    for first in range(0, matrix.shape[0], step):
        index.add(np.asarray(matrix[first : first + step], dtype=np.float32))
    faiss.write_index(index, str(path))
    seconds = time.perf_counter() - started
    log.info("ANN graph (HNSW M=%d) over %d vectors built in %.1fs", m, matrix.shape[0], seconds)
    return seconds
