"""Vector search: the exact path ranks like brute force, the inverted file (and an older index's HNSW graph)
find the same neighbours."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app import vectors
from app.build import BuildConfig, build_index
from app.errors import IndexUnavailable
from app.index import Index, live_path
from app.layout import ANN_FILE
from app.options import SearchOptions
from app.pipeline import Pipeline
from app.ranking import rank
from app.sources import FolderSource
from app.vectors import ExactSearcher, build_ann, build_hnsw, open_ann


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit rows drawn around 50 random centres, stored as float16 like an index."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    rows = centres[rng.integers(0, 50, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)
    return unit


def brute_force(matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Reference ranking in float32, ties by row."""
    scores = matrix.astype(np.float32) @ query.astype(np.float32)
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -scores))[:k]]


def test_exact_search_over_a_large_matrix_ranks_like_brute_force() -> None:
    matrix = clustered(70_000, 32, seed=1)
    searcher = ExactSearcher(matrix.copy())
    assert searcher._tensor is not None  # the float16 product, not the float32 fallback
    rng = np.random.default_rng(2)
    for query in rng.standard_normal((5, 32)).astype(np.float32):
        query /= np.linalg.norm(query)
        hits = searcher.search(query, 10)
        assert [row for row, _ in hits] == brute_force(matrix, query, 10)
        expected = matrix[hits[0][0]].astype(np.float32) @ query
        assert hits[0][1] == pytest.approx(float(expected), abs=1e-6)
        assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)


def recall_at_10(searcher: vectors.VectorSearcher, matrix: np.ndarray, queries: np.ndarray) -> float:
    """Share of the brute-force top 10 the searcher finds, its scores best first."""
    found = 0
    for query in queries:
        hits = searcher.search(query, 10)
        found += len({row for row, _ in hits} & set(brute_force(matrix, query, 10)))
        assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
    return found / (10 * len(queries))


@pytest.mark.parametrize(
    ("build", "kind"),
    [(build_ann, "ivf"), (build_hnsw, "hnsw")],
    ids=["inverted file", "an older index's HNSW graph"],
)
def test_the_ann_file_finds_the_exact_neighbours(
    tmp_path: Path, build: Callable[[np.ndarray, Path], float], kind: str
) -> None:
    matrix = clustered(3000, 32, seed=3)
    build(matrix, tmp_path / ANN_FILE)
    searcher = open_ann(tmp_path / ANN_FILE, matrix, nprobe=8, ef_search=64)
    assert searcher.kind == kind
    queries = matrix[np.random.default_rng(4).choice(3000, 50)].astype(np.float32)
    assert recall_at_10(searcher, matrix, queries) >= 0.95


def test_filtered_probe_returns_only_passing_rows_and_full_deep_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "SUBSET_EXACT", 0)  # the bitmap probe, not the exact subset
    matrix = clustered(3000, 32, seed=6)
    build_ann(matrix, tmp_path / ANN_FILE)
    searcher = open_ann(tmp_path / ANN_FILE, matrix, nprobe=1, ef_search=64)
    rows = np.arange(0, 3000, 7)
    query = matrix[5].astype(np.float32)
    scan = searcher.scan(query, rows)
    top = scan.top(10)
    assert len(top) == 10 and {row for row, _ in top} <= set(rows.tolist())
    deep = scan.top(400)  # more than the few probed cells hold: it probes more until the page is full
    assert len(deep) == 400 and {row for row, _ in deep} <= set(rows.tolist())
    assert len(searcher.search(query, 2000)) == 2000


def test_an_ann_file_of_another_size_is_refused(tmp_path: Path) -> None:
    matrix = clustered(300, 16, seed=5)
    build_ann(matrix, tmp_path / ANN_FILE)
    with pytest.raises(IndexUnavailable, match="rebuild"):
        open_ann(tmp_path / ANN_FILE, matrix[:200], nprobe=8, ef_search=32)


def test_build_stores_the_graph_and_the_index_uses_it_above_the_threshold(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    build_index(
        FolderSource(gallery), index_dir, pipeline, BuildConfig(workers=0, ann="always"), progress=False
    )
    assert (live_path(index_dir) / ANN_FILE).is_file()
    exact = Index(index_dir)
    ann = Index(index_dir, SearchOptions(ann_threshold=0))
    assert exact.searcher.kind == "exact" and ann.searcher.kind == "ivf"
    assert exact.meta.build.ann is True
    query = np.asarray(exact.vectors[1], dtype=np.float32)
    assert rank(ann, query, 3) == rank(exact, query, 3)
    assert rank(ann, query, 2, 1) == rank(exact, query, 3)[1:]


def test_small_builds_store_no_graph_and_a_missing_graph_falls_back_to_exact(
    index_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not (live_path(index_dir) / ANN_FILE).exists()
    with caplog.at_level(logging.WARNING):
        index = Index(index_dir, SearchOptions(ann_threshold=1))
    assert index.searcher.kind == "exact"
    assert "--ann always" in caplog.text
