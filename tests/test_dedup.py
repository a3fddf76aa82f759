"""Ranking: near-duplicate folding, paging in groups, one vector search a request, the API, real photos."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app import ranking
from app.bridge import Bridge, BridgeParams
from app.build import BuildConfig, build_index
from app.index import Index
from app.main import create_app
from app.options import DEFAULT_DEDUP_THRESHOLD
from app.pipeline import Models, Pipeline
from app.ranking import Ranked
from app.references import VisualHint
from app.searchers import Space
from app.settings import Settings
from app.sources import FolderSource
from app.vectors import ExactSearcher, Hits, Scan, VectorSearcher
from tests.conftest import png_bytes, service_factory, wait_ready

RED = (220, 20, 20)
ORANGE = (220, 120, 20)
GREEN = (20, 200, 20)
BLUE = (20, 20, 220)


def unit(rows: list[list[float]]) -> np.ndarray:
    """Rows scaled to length 1, as the index stores features."""
    matrix = np.asarray(rows, dtype=np.float32)
    scaled: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return scaled


class CountingSearcher:
    """An exact searcher that counts its vector searches (scans) and the depths they are read to."""

    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        self._exact = ExactSearcher(matrix)
        self.scans = 0
        self.depths: list[int] = []

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Scan:
        """One vector search, its reads recorded."""
        self.scans += 1
        inner = self._exact.scan(query, rows)

        class Recorded:
            def top(inner_self, k: int) -> Hits:  # noqa: N805 (the scan's own self is the outer one)
                self.depths.append(k)
                return inner.top(k)

        return Recorded()

    def search(self, query: np.ndarray, k: int) -> Hits:
        """Top k, through one scan."""
        return self.scan(query).top(k)

    def close(self) -> None:
        """Nothing to release."""


class MatrixIndex:
    """The part of Index that ranking reads, over an in-memory matrix of unit features."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = self.vectors = features
        self.count = features.shape[0]
        self.searcher = CountingSearcher(features)

    def searcher_for(self, space: str) -> CountingSearcher:
        """The same counting searcher for both spaces."""
        return self.searcher


def rank(index: MatrixIndex, query: np.ndarray, top_k: int, offset: int = 0, **options: Any) -> list[Ranked]:
    """ranking.rank over the in-memory index."""
    return ranking.rank(cast(Index, index), query, top_k, offset, **options)


def test_collapse_keeps_the_best_ranked_copy_and_lists_the_rest() -> None:
    features = unit([[1, 0, 0], [0.999, 0.02, 0], [0, 1, 0], [0.998, 0, 0.03], [0, 0.99, 0.05]])
    ranked = [(1, 0.9), (2, 0.8), (0, 0.7), (4, 0.6), (3, 0.5)]
    groups = ranking.collapse(ranked, features, 0.97)
    assert groups == [Ranked(1, 0.9, (0, 3)), Ranked(2, 0.8, (4,))]
    assert [g.duplicates for g in groups] == [2, 1]


def test_collapse_joins_the_most_similar_representative_and_respects_the_threshold() -> None:
    # Rows at 0°, 24° and 14°: row 1 stands apart from row 0; row 2 is near both but nearer row 1.
    angles = np.radians([0.0, 24.0, 14.0])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    groups = ranking.collapse([(0, 0.9), (1, 0.8), (2, 0.7)], features, 0.95)
    assert [(g.row, g.duplicate_rows) for g in groups] == [(0, ()), (1, (2,))]
    assert len(ranking.collapse([(0, 0.9), (1, 0.8), (2, 0.7)], features, 0.999)) == 3
    assert ranking.collapse([], features, 0.9) == []


def test_folding_reads_deeper_until_the_page_is_full_from_one_vector_search() -> None:
    # 150 near-identical rows rank first, then 5 distinct ones.
    rng = np.random.default_rng(0)
    copies = np.array([1.0, 0, 0, 0, 0, 0]) + rng.normal(0, 0.002, (150, 6))
    distinct = np.eye(6)[1:] * 0.9 + np.array([0.3, 0, 0, 0, 0, 0])
    index = MatrixIndex(unit([*copies.tolist(), *distinct.tolist()]))
    query = np.array([1.0, 0, 0, 0, 0, 0], dtype=np.float32)
    first = rank(index, query, top_k=3, threshold=0.97)
    assert first[0].duplicates == 149 and len(first) == 3
    assert set(first[0].duplicate_rows) | {first[0].row} == set(range(150))
    assert index.searcher.scans == 1, "one vector search per request"
    assert len(index.searcher.depths) > 1, "the first window held one group only: it must have read deeper"
    second = rank(index, query, top_k=3, offset=3, threshold=0.97)
    everything = rank(index, query, top_k=100, threshold=0.97)
    assert [g.row for g in everything] == [g.row for g in first + second]
    assert len(everything) == 6
    assert rank(index, query, top_k=3, offset=10, threshold=0.97) == []
    assert index.searcher.scans == 4


def test_past_the_candidate_cap_results_still_come_unfolded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking, "MAX_WINDOW", 8)
    rows = [[1.0, 0.001 * i] for i in range(20)] + [[0.0, 1.0]]
    index = MatrixIndex(unit(rows))
    query = np.array([1.0, 0.0], dtype=np.float32)
    groups = rank(index, query, top_k=5, threshold=0.97)
    # The eight best candidates fold into one; the next ranked rows follow one by one.
    assert [(g.row, g.duplicates) for g in groups] == [(0, 7), (8, 0), (9, 0), (10, 0), (11, 0)]
    page = rank(index, query, top_k=2, offset=3, threshold=0.97)
    assert [g.row for g in page] == [10, 11]
    assert index.searcher.scans == 2


def test_threshold_zero_is_the_plain_ranking() -> None:
    index = MatrixIndex(unit([[1, 0], [1, 0.001], [0, 1]]))
    groups = rank(index, np.array([1.0, 0.0], np.float32), 3, threshold=0)
    assert [(g.row, g.duplicates) for g in groups] == [(0, 0), (1, 0), (2, 0)]


def clustered_copies(groups: int, copies: int, dim: int, seed: int) -> np.ndarray:
    """`groups` distinct unit rows, each with `copies` near-identical copies, rows shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim))
    rows = np.repeat(centres, copies, axis=0) + rng.normal(0, 0.003, (groups * copies, dim))
    return unit(rng.permutation(rows).tolist())


@pytest.mark.parametrize("offset", [0, 400])
def test_one_request_runs_one_vector_search_and_one_re_rank_whatever_the_page(
    monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    features = clustered_copies(groups=600, copies=4, dim=16, seed=1)  # 2,400 rows, 600 groups
    index = MatrixIndex(features)
    query = features[7] + 0.5 * unit([[1.0] * 16])[0]
    query /= np.linalg.norm(query)
    hint = VisualHint(features[11], 0.3)
    reranks: list[int] = []
    real_rerank = ranking.rerank_by_look

    def counted(ranked: Hits, visual: VisualHint, matrix: np.ndarray) -> Hits:
        reranks.append(len(ranked))
        return real_rerank(ranked, visual, matrix)

    monkeypatch.setattr(ranking, "rerank_by_look", counted)
    page = rank(index, query, top_k=10, offset=offset, visual=hint, threshold=0.97)
    assert index.searcher.scans == 1 and len(reranks) == 1
    assert max(index.searcher.depths) >= 4 * (offset + 10), "the page is deep: the scan was read deep"
    # The same page as folding the whole exact ranking, re-ranked once, in one walk.
    scores = features @ query
    everything = [(int(row), float(scores[row])) for row in np.lexsort((np.arange(len(scores)), -scores))]
    expected = ranking.collapse(real_rerank(everything, hint, features), features, 0.97)
    assert [(g.row, g.duplicates) for g in page] == [
        (g.row, g.duplicates) for g in expected[offset : offset + 10]
    ]
    assert all(g.duplicates == 3 for g in page)


# ---- through the API, with the fake models (their visual feature is the mean colour) ----


@pytest.fixture(scope="module")
def planted_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """red.png, a resized JPEG copy of it, orange, green and blue."""
    folder = tmp_path_factory.mktemp("planted")
    (folder / "red.png").write_bytes(png_bytes(RED, (60, 40)))
    (folder / "red-copy.jpg").write_bytes(png_bytes(RED, (30, 20), "JPEG"))
    (folder / "orange.png").write_bytes(png_bytes(ORANGE, (60, 40)))
    (folder / "green.png").write_bytes(png_bytes(GREEN, (60, 40)))
    (folder / "blue.png").write_bytes(png_bytes(BLUE, (60, 40)))
    index_dir = tmp_path_factory.mktemp("planted-index") / "index"
    build_index(FolderSource(folder), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    return index_dir


@pytest.fixture
def open_client(planted_index: Path, models: Models, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Opens clients over the planted index with chosen settings; closes them after the test."""
    opened: list[TestClient] = []

    def make(threshold: float = DEFAULT_DEDUP_THRESHOLD) -> TestClient:
        settings = Settings(
            index_dir=planted_index, cache_dir=tmp_path, device="cpu", dedup_threshold=threshold
        )
        client = TestClient(create_app(settings, factory=service_factory(models, tmp_path)))
        client.__enter__()
        opened.append(client)
        wait_ready(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_text_search_shows_one_result_per_group_with_its_duplicate_count(
    open_client: Callable[..., TestClient],
) -> None:
    client = open_client()
    results = client.get("/search", params={"q": "red thing", "top_k": 10}).json()["results"]
    folded = {r["source"]: r["duplicates"] for r in results}
    red = "red.png" if "red.png" in folded else "red-copy.jpg"
    assert folded == {red: 1, "orange.png": 0, "green.png": 0, "blue.png": 0}
    # The folded copy is listed by id: the other red file's.
    unfolded = open_client(threshold=0).get("/search", params={"q": "red thing"}).json()["results"]
    ids = {r["source"]: r["id"] for r in unfolded}
    copy = ({"red.png", "red-copy.jpg"} - {red}).pop()
    assert {r["source"]: r["duplicate_ids"] for r in results} == {
        red: [ids[copy]],
        "orange.png": [],
        "green.png": [],
        "blue.png": [],
    }
    sources = [r["source"] for r in results]
    # Pages count groups: the second page starts after the folded copy.
    page = client.post("/search", json={"query": "red thing", "top_k": 2, "offset": 2}).json()["results"]
    assert [r["source"] for r in page] == sources[2:4]


def test_each_request_through_the_api_runs_one_vector_search(
    open_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client()
    scans: list[str] = []
    searcher_for = Index.searcher_for

    def counted(index: Index, space: Space) -> VectorSearcher:
        searcher = searcher_for(index, space)
        scan = searcher.scan

        class Counted:
            kind = searcher.kind
            search, close = searcher.search, searcher.close

            def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Scan:
                scans.append(space)
                return scan(query, rows)

        return Counted()

    monkeypatch.setattr(Index, "searcher_for", counted)
    for offset in (0, 3):
        assert client.get("/search", params={"q": "red thing", "offset": offset}).status_code == 200
    upload = {"image": ("q.png", png_bytes(RED, (50, 50)), "image/png")}
    assert client.post("/search/image", files=upload, data={"offset": "2"}).status_code == 200
    assert scans == ["text", "text", "visual"]


def test_image_search_folds_the_copy_too(open_client: Callable[..., TestClient]) -> None:
    client = open_client()
    upload = png_bytes(RED, (50, 50))
    response = client.post("/search/image", files={"image": ("q.png", upload, "image/png")})
    results = response.json()["results"]
    assert results[0]["source"] in {"red.png", "red-copy.jpg"} and results[0]["duplicates"] == 1
    assert "orange.png" in [r["source"] for r in results] and len(results) == 4


def test_threshold_zero_turns_collapsing_off(open_client: Callable[..., TestClient]) -> None:
    client = open_client(threshold=0)
    results = client.get("/search", params={"q": "red thing"}).json()["results"]
    assert len(results) == 5 and {r["duplicates"] for r in results} == {0}


@pytest.mark.parametrize("value", ["-0.1", "1.5", "high"])
def test_an_invalid_threshold_fails_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("IMGSEARCH_DEDUP_THRESHOLD", value)
    with pytest.raises(ValueError, match="dedup_threshold"):
        Settings()


# ---- the real packaged image model over photos with planted copies ----

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "horse", "camera", "coins", "brick", "text")


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """The image after a round trip through JPEG at `quality`."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def scaled(image: Image.Image, factor: float) -> Image.Image:
    """The image resized by `factor` (Lanczos)."""
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "horse": lambda im: jpeg(scaled(im, 0.5), 90),  # the usual web copy: half size, re-encoded
    "chelsea": lambda im: jpeg(scaled(im, 0.75), 90),  # (451×300: half size would be below 224 px)
    "coffee": lambda im: jpeg(im, 75),
    "astronaut": lambda im: jpeg(scaled(im, 1.5), 90),
    "rocket": lambda im: scaled(im, 0.75),
}


@pytest.mark.real_weights
def test_real_features_fold_planted_copies_and_keep_distinct_photos_apart() -> None:
    from skimage import data

    from app.registry import create_models

    models = create_models("packaged", Settings(device="cpu"), with_lm=False)
    models.image.load(torch.device("cpu"), torch.float32)
    labels = models.image.labels or []
    # The visual features do not depend on the bridge: a stand-in skips embedding 1000 label names.
    stand_in = Bridge(BridgeParams(), labels, np.zeros((len(labels), 1), np.float32), identity=True)
    pipeline = Pipeline(models, stand_in)
    photos = {}
    for name in PHOTOS:
        array = np.asarray(getattr(data, name)())
        photos[name] = Image.fromarray(array.astype(np.uint8)).convert("RGB")
    names = list(photos) + [f"{name}-copy" for name in COPIES]
    images = list(photos.values()) + [make(photos[name]) for name, make in COPIES.items()]
    features = pipeline.encode_images(images).features
    similarity = features @ features.T
    n = len(PHOTOS)
    copy_scores = {name: float(similarity[names.index(name), n + i]) for i, name in enumerate(COPIES)}
    distinct = similarity[:n, :n][np.triu_indices(n, 1)]
    threshold = DEFAULT_DEDUP_THRESHOLD
    assert min(copy_scores.values()) >= threshold, copy_scores
    assert float(distinct.max()) < threshold - 0.2, float(distinct.max())
    # Ranked by closeness to the coffee photo, every copy folds into its original and nothing else folds.
    ranked = [(int(row), float(similarity[1, row])) for row in np.argsort(-similarity[1])]
    groups = ranking.collapse(ranked, features, threshold)
    folded = {names[g.row].removesuffix("-copy"): g.duplicates for g in groups}
    assert len(groups) == n and folded == {name: int(name in COPIES) for name in PHOTOS}
