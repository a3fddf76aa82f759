"""Filters inside the search: every backend ranks exactly the matching images, in the same order."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app import milvus_search, vectors
from app.build import BuildConfig, build_index
from app.catalog import Catalog
from app.filters import Filters
from app.index import VECTORS, Index, live_path
from app.layout import ANN_FILE
from app.milvus import export_index
from app.options import SearchOptions
from app.pipeline import Pipeline
from app.ranking import rank
from app.sources import FolderSource
from app.vectors import rank_exact
from tests.conftest import coloured_pictures

IMAGES = 60
QUERIES = ["red thing", "green", "blue thing", "a red and green thing"]
FILTERS: dict[str, dict[str, object]] = {
    "folder": {"path_prefix": "set1"},
    "formats": {"formats": ["png", "webp"]},
    "size": {"min_width": 40, "min_height": 30},
    "folder and format": {"path_prefix": "set2/", "formats": ["jpg"]},
    "nothing": {"path_prefix": "elsewhere"},
}


def make_pictures(folder: Path, count: int) -> Path:
    """`count` two-colour pictures of varied sizes and formats in four folders."""
    return coloured_pictures(folder, count, seed=11)


@pytest.fixture(scope="module")
def index_dir(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the pictures with its ANN file (an inverted file)."""
    pictures = make_pictures(tmp_path_factory.mktemp("pictures"), IMAGES)
    target = tmp_path_factory.mktemp("filtered") / "index"
    config = BuildConfig(pca_dim=0, workers=0, ann="always")
    build_index(FolderSource(pictures), target, pipeline, config, progress=False)
    return target


@pytest.fixture(scope="module")
def lite(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Milvus Lite database holding the index's vectors."""
    uri = str(tmp_path_factory.mktemp("milvus") / "vectors.db")
    export_index(index_dir, uri)
    return uri


@pytest.fixture(scope="module")
def hnsw_dir(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same index as an older build stored it: an HNSW graph as its ANN file."""
    target = tmp_path_factory.mktemp("older") / "index"
    shutil.copytree(index_dir, target, symlinks=True)
    live = live_path(target)
    vectors.build_hnsw(np.load(live / VECTORS), live / ANN_FILE)
    return target


@pytest.fixture(params=["exact", "ivf", "hnsw", "milvus"])
def backend(request: pytest.FixtureRequest, index_dir: Path, hnsw_dir: Path, lite: str) -> Iterator[Index]:
    """The index opened with one backend."""
    options = {
        "exact": SearchOptions(),
        "ivf": SearchOptions(ann_threshold=1),
        "hnsw": SearchOptions(ann_threshold=1),
        "milvus": SearchOptions(backend="milvus", milvus_uri=lite),
    }[request.param]
    index = Index(hnsw_dir if request.param == "hnsw" else index_dir, options)
    assert index.searcher.kind == request.param
    yield index
    index.close()


def expected(index: Index, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    """The best of the matching rows by brute force: each one scored exactly."""
    return [row for row, _ in rank_exact(index.vectors, query, rows, k)] if len(rows) else []


@pytest.mark.parametrize("walk", ["subset scored exactly", "graph or store filtered"])
@pytest.mark.parametrize("name", FILTERS)
def test_every_backend_returns_exactly_the_matching_images_in_order(
    backend: Index, pipeline: Pipeline, name: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if walk != "subset scored exactly":  # the faiss ID selector and Milvus's `id in [...]` expression
        monkeypatch.setattr(vectors, "SUBSET_EXACT", 0)
        monkeypatch.setattr(vectors, "HNSW_SUBSET_EXACT", 0)
        monkeypatch.setattr(vectors, "SELECTOR_MIN_SHARE", 0.0)
        monkeypatch.setattr(milvus_search, "SUBSET_EXACT", 0)
    catalog = Catalog(backend)
    rows = catalog.allowed_rows(Filters.parse(**FILTERS[name]))
    catalog.close()
    assert rows is not None
    for text in QUERIES:
        query = pipeline.encode_query(text).vector
        wanted = expected(backend, query, rows, 10)
        assert len(wanted) == min(10, len(rows))  # a full page whenever enough images match
        assert [result.row for result in rank(backend, query, 10, rows=rows)] == wanted
        assert [result.row for result in rank(backend, query, 4, 3, rows=rows)] == wanted[3:7]
