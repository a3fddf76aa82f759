"""The vector backends an index can search with, by name: the matrix (exact or its ANN file) or Milvus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from app.errors import IndexUnavailable
from app.layout import ANN_FILE
from app.milvus_search import MilvusSearcher
from app.options import SearchOptions
from app.vectors import ExactSearcher, VectorSearcher, open_ann

log = logging.getLogger(__name__)

# The two spaces an index is searched in: text-space vectors (text queries) and visual features.
Space = Literal["text", "visual"]


def open_matrix(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> VectorSearcher:
    """Exact search, or the stored ANN file (an inverted file; older builds: HNSW) from the threshold on."""
    ann = index_path / ANN_FILE
    if matrix.shape[0] >= options.ann_threshold:
        if ann.is_file():
            return open_ann(ann, matrix, options.nprobe, options.ef_search)
        log.warning(
            "%d vectors ≥ IMGSEARCH_ANN_THRESHOLD %d but %s has no %s: searching exactly "
            "(rebuild with --ann always)",
            matrix.shape[0],
            options.ann_threshold,
            index_path,
            ANN_FILE,
        )
    return ExactSearcher(matrix)


SearcherFactory = Callable[[Path, np.ndarray, SearchOptions], VectorSearcher]
BACKENDS: dict[str, SearcherFactory] = {"matrix": open_matrix, "milvus": MilvusSearcher}


def open_searcher(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> VectorSearcher:
    """The searcher the options ask for over an opened index's text-space vectors."""
    try:
        factory = BACKENDS[options.backend]
    except KeyError:
        raise IndexUnavailable(f"unknown vector backend {options.backend!r}") from None
    return factory(index_path, matrix, options)
