"""Stage 5b: nearest-neighbour search over the index's vectors — exact, ANN (faiss HNSW) or a vector store."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from app.errors import IndexUnavailable

log = logging.getLogger(__name__)

ANN_FILE = "ann.faiss"
Backend = Literal["matrix", "milvus"]


@dataclass(frozen=True)
class SearchOptions:
    """How the service searches an index's text-space vectors."""

    backend: Backend = "matrix"
    ann_threshold: int = 100_000  # matrix backend: use the stored ANN graph from this many vectors on
    ef_search: int = 512  # HNSW breadth at query time: recall@10 0.99 at 1M vectors (bench/search.py)
    milvus_uri: str | None = None  # milvus backend: a file path (Milvus Lite) or an http(s) URI
    milvus_collection: str = "images"


class VectorSearcher(Protocol):
    """Top-k by inner product (cosine on unit rows) over one matrix of vectors."""

    kind: str

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, score) pairs, best first, at most k; scores are float32 cosines."""
        ...

    def close(self) -> None:
        """Release what the searcher holds."""
        ...


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
    return [(int(rows[i]), float(np.clip(scores[i], -1.0, 1.0))) for i in order]


def _faiss() -> Any:
    """faiss, imported on first use (its stubs lag its API)."""
    return importlib.import_module("faiss")


class ExactSearcher:
    """Every row scored: one float16 matrix-vector product over the memory map, then a float32 re-rank."""

    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        import torch

        self.matrix = matrix
        # A copy-on-write map is writable as far as torch can tell, so it wraps it without a copy.
        self._tensor: Any = torch.from_numpy(matrix) if matrix.flags.writeable else None

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Exact top-k; float16 scores choose a candidate pool that float32 then ranks."""
        n = self.matrix.shape[0]
        k = min(k, n)
        if k <= 0:
            return []
        if self._tensor is None or self.matrix.dtype != np.float16:
            scores = np.asarray(self.matrix, dtype=np.float32) @ query.astype(np.float32)
            pool = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
            return rank_exact(self.matrix, query, pool, k)
        if n <= 2 * k + 32:
            return rank_exact(self.matrix, query, np.arange(n), k)
        import torch

        wanted = min(n, 2 * k + 32)
        with torch.inference_mode():
            scores = self._tensor @ torch.from_numpy(query.astype(np.float16))
            pool = torch.topk(scores, wanted, sorted=False).indices.numpy()
        return rank_exact(self.matrix, query, pool, k)

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

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Approximate top-k (efSearch grows with k so deep pages stay complete)."""
        faiss = _faiss()
        k = min(k, self.matrix.shape[0])
        if k <= 0:
            return []
        params = faiss.SearchParametersHNSW(efSearch=max(self._ef, k))
        _, rows = self._index.search(query.astype(np.float32)[None], k, params=params)
        found = rows[0][rows[0] >= 0]
        return rank_exact(self.matrix, query, found, k)

    def close(self) -> None:
        """Drop the graph."""
        self._index = None


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


def _open_matrix(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> VectorSearcher:
    """Exact search, or the stored HNSW graph once the index reaches the ANN threshold."""
    ann = index_path / ANN_FILE
    if matrix.shape[0] >= options.ann_threshold:
        if ann.is_file():
            return HnswSearcher(ann, matrix, options.ef_search)
        log.warning(
            "%d vectors ≥ IMGSEARCH_ANN_THRESHOLD %d but %s has no %s: searching exactly "
            "(rebuild with --ann always)",
            matrix.shape[0],
            options.ann_threshold,
            index_path,
            ANN_FILE,
        )
    return ExactSearcher(matrix)


def _open_milvus(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> VectorSearcher:
    """A Milvus collection (app/milvus.py, imported here so that pymilvus loads only when used)."""
    from app.milvus import open_milvus

    return open_milvus(index_path, matrix, options)


SearcherFactory = Callable[[Path, np.ndarray, SearchOptions], VectorSearcher]
BACKENDS: dict[str, SearcherFactory] = {"matrix": _open_matrix, "milvus": _open_milvus}


def open_searcher(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> VectorSearcher:
    """The searcher the options ask for over an opened index's text-space vectors."""
    try:
        factory = BACKENDS[options.backend]
    except KeyError:
        raise IndexUnavailable(f"unknown vector backend {options.backend!r}") from None
    return factory(index_path, matrix, options)
