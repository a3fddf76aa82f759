"""Stage 5b: nearest-neighbour search over the index's vectors — exact, ANN (faiss IVF) or a vector store.

The ANN structure the build stores (`ann.faiss`) is an inverted file: k-means cells over the rows
(`ivf_lists`: about 4·√n of them), float16 codes, inner product. A query probes its `nprobe` nearest
cells and the candidates are re-ranked exactly. It replaced an HNSW graph (which an older index may
still hold, and which still opens) because text queries do not lie among the image vectors they
search: at 1 M rows the graph needed efSearch 1,024 (8–10 ms) for recall@10 0.95 on such queries,
while 96–128 probed cells gave 0.96–0.97 in 3–4 ms, built in a fraction of the time
(docs/performance.md).

Filtered search (`scan(query, rows)`): only the given rows are ranked, inside the search, so a page
is full whenever enough rows pass. The exact searcher scores just those rows. The inverted file
tests a bitmap of the rows as it scans its cells and probes nprobe / √share cells, so that a selective
filter still meets about as many passing rows as an unfiltered probe (recall@10 ≥ 0.97 from 50 % down
to 0.1 % of 1 M rows passing); a subset of at most `SUBSET_EXACT` rows is scored exactly. An
older HNSW graph walks with the same bitmap, and falls back to exact search under
`SELECTOR_MIN_SHARE` of the index. Either way the candidates are ranked by the same float32
cosine (`rank_exact`), so every backend returns the same rows in the same order.
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.errors import IndexUnavailable

log = logging.getLogger(__name__)

SUBSET_EXACT = 2_048  # filtered searches over at most this many rows score them all exactly
HNSW_SUBSET_EXACT = 20_000  # the same for an older index's HNSW graph, whose walk loses recall sooner
NUMPY_PRODUCT_MAX = 4_096  # subsets up to this many rows are scored in numpy (torch's call costs more)
LISTS_PER_ROOT = 4  # inverted-file cells per √rows
TRAIN_PER_LIST = 40  # k-means sample per cell (faiss asks for at least 39)
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
    several times more than the product itself. Up to `NUMPY_PRODUCT_MAX` rows the product is numpy's
    float32 one, which costs less than calling torch.
    """

    def __init__(self, matrix: np.ndarray, query: np.ndarray, rows: np.ndarray) -> None:
        self._matrix, self._query = matrix, query
        self._rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._scores: np.ndarray | None = None

    def _score(self) -> np.ndarray:
        """Approximate scores of every row of the subset (float16 product when the matrix is float16)."""
        gathered = np.asarray(self._matrix[self._rows])
        if gathered.dtype != np.float16 or len(gathered) <= NUMPY_PRODUCT_MAX:
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
    """faiss HNSW graph an older build stored; candidates re-ranked exactly against the matrix."""

    kind = "hnsw"

    def __init__(self, graph: Any, matrix: np.ndarray, ef_search: int) -> None:
        self.matrix = matrix
        self._index: Any = graph  # a faiss IndexHNSW read by `read_ann`
        self._ef = ef_search

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Rescan | SubsetScan:
        """The graph's ranking (of `rows` only, when given); a deeper read walks the graph again, wider."""
        if rows is None:
            return Rescan(self.search, query)
        if len(rows) <= HNSW_SUBSET_EXACT or len(rows) < SELECTOR_MIN_SHARE * self.matrix.shape[0]:
            return SubsetScan(self.matrix, query, rows)
        selector = _BITMAPS.of(rows, self.matrix.shape[0])
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


class IvfSearcher:
    """faiss inverted file built by the batch script; candidates re-ranked exactly against the matrix."""

    kind = "ivf"

    def __init__(self, ivf: Any, matrix: np.ndarray, nprobe: int) -> None:
        self.matrix = matrix
        self._index: Any = ivf  # a faiss IndexIVF read by `read_ann`
        # One query's cells are scanned by faiss's threads together (its default splits a batch of
        # queries among them, so a single query ran on one core): 1.7-2.3 ms instead of 2.5-4.5 at 1 M.
        self._index.parallel_mode = 1
        self._nprobe = nprobe

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Rescan | SubsetScan:
        """The probe's ranking (of `rows` only, when given); a deeper read probes again, as deep."""
        if rows is None:
            return Rescan(self.search, query)
        if len(rows) <= SUBSET_EXACT:
            return SubsetScan(self.matrix, query, rows)
        share = len(rows) / self.matrix.shape[0]
        nprobe = math.ceil(self._nprobe / math.sqrt(share))
        selector = _BITMAPS.of(rows, self.matrix.shape[0])
        return Rescan(lambda q, k: self._probe(q, min(k, len(rows)), nprobe, selector.selector), query)

    def search(self, query: np.ndarray, k: int) -> Hits:
        """Approximate top-k."""
        return self._probe(query, min(k, self.matrix.shape[0]), self._nprobe, None)

    def _probe(self, query: np.ndarray, k: int, nprobe: int, selector: Any) -> Hits:
        """The top-k among the rows `selector` lets through in the nearest cells, probing more cells
        (up to all) while they hold fewer than k such rows, so deep pages stay complete."""
        if k <= 0:
            return []
        faiss = _faiss()
        lists = int(self._index.nlist)
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, lists))
        if selector is not None:
            params.sel = selector
        while True:
            _, rows = self._index.search(query.astype(np.float32)[None], k, params=params)
            found = rows[0][rows[0] >= 0]
            if len(found) >= k or params.nprobe >= lists:
                return rank_exact(self.matrix, query, found, k)
            params.nprobe = min(lists, 4 * params.nprobe)

    def close(self) -> None:
        """Drop the inverted file."""
        self._index = None


def read_ann(path: Path, count: int) -> Any:
    """The faiss index stored at `path` (IndexUnavailable when it holds another number of rows)."""
    loaded = _faiss().read_index(str(path))
    if loaded.ntotal != count:
        raise IndexUnavailable(f"{path} holds {loaded.ntotal} vectors but the index has {count}; rebuild it")
    return loaded


def open_ann(path: Path, matrix: np.ndarray, nprobe: int, ef_search: int) -> IvfSearcher | HnswSearcher:
    """The searcher of the stored ANN structure: the inverted file, or an older build's HNSW graph."""
    loaded = read_ann(path, matrix.shape[0])
    if isinstance(loaded, _faiss().IndexIVF):
        return IvfSearcher(loaded, matrix, nprobe)
    return HnswSearcher(loaded, matrix, ef_search)


@contextmanager
def one_thread() -> Iterator[None]:
    """faiss searches from this thread on one core for the block (OpenMP's thread count is per calling
    thread): a hybrid request's lexical search holds the other core meanwhile."""
    faiss = sys.modules.get("faiss")  # nothing to limit if no ANN file was ever opened
    if faiss is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class _Bitmap:
    """A faiss selector over a bitmap of the rows: one bit test per visited node (a hash set of
    500,000 rows costs more to build and to probe), the bits kept alive as long as the selector."""

    def __init__(self, rows: np.ndarray, count: int) -> None:
        mask = np.zeros(count, dtype=bool)
        mask[rows] = True
        self.bits = np.packbits(mask, bitorder="little")
        self.selector: Any = _faiss().IDSelectorBitmap(count, _faiss().swig_ptr(self.bits))


class _Bitmaps:
    """The bitmaps of the last few row sets filtered on, by identity: a filter's rows arrive as the same
    array while the catalog keeps that filter's selection (app/catalog.py), so each bitmap is built once."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._found: OrderedDict[int, tuple[np.ndarray, _Bitmap]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, rows: np.ndarray, count: int) -> _Bitmap:
        """The bitmap of `rows` among `count` rows (the array is held, so its id stays its own)."""
        with self._lock:
            found = self._found.get(id(rows))
            if found is not None and found[0] is rows and len(found[1].bits) * 8 >= count:
                self._found.move_to_end(id(rows))
                return found[1]
        bitmap = _Bitmap(rows, count)
        with self._lock:
            self._found[id(rows)] = (rows, bitmap)
            while len(self._found) > self._kept:
                self._found.popitem(last=False)
        return bitmap


_BITMAPS = _Bitmaps(kept=8)


def ivf_lists(count: int) -> int:
    """Cells of the inverted file over `count` rows: the power of two nearest 4·√count, each with enough
    rows to train (1,000,000 rows → 4,096 cells; 100,000 → 1,024; 200 → 5)."""
    wanted = 2 ** round(math.log2(max(1.0, LISTS_PER_ROOT * math.sqrt(count))))
    return int(max(1, min(wanted, count // TRAIN_PER_LIST)))


def build_ann(matrix: np.ndarray, path: Path) -> float:
    """Build the inverted file (float16 codes, inner product) over the matrix, write it; returns seconds."""
    faiss = _faiss()
    started = time.perf_counter()
    count, dim = matrix.shape
    lists = ivf_lists(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
    )
    sample = np.random.default_rng(0).choice(count, min(count, TRAIN_PER_LIST * lists), replace=False)
    index.train(read_rows(matrix, sample))
    step = 100_000
    for first in range(0, count, step):
        index.add(np.asarray(matrix[first : first + step], dtype=np.float32))
    faiss.write_index(index, str(path))
    seconds = time.perf_counter() - started
    log.info("ANN inverted file (%d cells) over %d vectors built in %.1fs", lists, count, seconds)
    return seconds


def build_hnsw(matrix: np.ndarray, path: Path, m: int = 32, ef_construction: int = 200) -> float:
    """The HNSW graph (float16 storage, inner product) that builds stored before the inverted file;
    kept for the benchmarks that compare the two and the tests of older indexes. Returns seconds."""
    faiss = _faiss()
    started = time.perf_counter()
    index = faiss.IndexHNSWSQ(matrix.shape[1], faiss.ScalarQuantizer.QT_fp16, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    step = 100_000
    index.train(np.asarray(matrix[:step], dtype=np.float32))
    for first in range(0, matrix.shape[0], step):
        index.add(np.asarray(matrix[first : first + step], dtype=np.float32))
    faiss.write_index(index, str(path))
    return time.perf_counter() - started
