"""At scale: the Ray build engine gives the local engine's index; Milvus Lite answers like the matrix."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import ray
from fastapi.testclient import TestClient
from PIL import Image

from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, BuildReport, build_index
from app.build_ray import RayEngine
from app.errors import IndexUnavailable
from app.index import Index
from app.main import create_app
from app.milvus import export_index
from app.milvus_search import collection_name, connect, disconnect, stamp_of
from app.options import SearchOptions
from app.pipeline import Pipeline
from app.propagation import stored
from app.ranking import rank
from app.registry import make_bridge
from app.settings import Settings
from app.sources import FolderSource, HFDatasetSource
from scripts import build_index as build_script
from tests.conftest import coloured_pictures, service_factory, wait_ready
from tests.fakes import COLOURS, CountingReader, fake_models

# Ray Data reads a few deprecated settings of its own context when it starts a dataset.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

IMAGES = 60
CONFIG = BuildConfig(pca_dim=16, batch_size=8, workers=0)
QUERIES = ["red thing", "green", "blue thing", "a red and green thing", "something blue", "thing"]


@dataclass(frozen=True)
class FakePipeline:
    """Picklable recipe for the fake pipeline: each Ray actor builds its own."""

    cache: Path

    def __call__(self) -> Pipeline:
        """The fake models behind the same bridge as the `pipeline` fixture."""
        models = fake_models()
        return Pipeline(models, make_bridge(models, BridgeParams(), self.cache), flip=True)


def make_pictures(folder: Path, count: int) -> Path:
    """`count` two-colour pictures of varied sizes and formats, one copy of the first, one corrupt file."""
    coloured_pictures(folder, count, seed=7)
    shutil.copyfile(folder / "set0" / "000.png", folder / "set3" / "zz-copy.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)
    return folder


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two matrices."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    found: np.ndarray = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One two-CPU Ray session for the module (the engine uses it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated folder."""
    return make_pictures(tmp_path_factory.mktemp("pictures"), IMAGES)


@pytest.fixture(scope="module")
def local(
    pictures: Path, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildReport]:
    """The folder built by the local engine."""
    index_dir = tmp_path_factory.mktemp("local") / "index"
    return index_dir, build_index(FolderSource(pictures), index_dir, pipeline, CONFIG, progress=False)


@pytest.fixture(scope="module")
def distributed(
    cluster: None, pictures: Path, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildReport]:
    """The same folder built by two Ray actors."""
    index_dir = tmp_path_factory.mktemp("ray") / "index"
    engine = RayEngine(FakePipeline(tmp_path_factory.mktemp("actor-cache")), workers=2)
    report = build_index(FolderSource(pictures), index_dir, pipeline, CONFIG, progress=False, engine=engine)
    return index_dir, report


@pytest.fixture(scope="module")
def lite(local: tuple[Path, BuildReport], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Milvus Lite database holding the local index's vectors."""
    uri = str(tmp_path_factory.mktemp("milvus") / "vectors.db")
    export_index(local[0], uri)
    return uri


def test_ray_engine_builds_the_index_the_local_engine_builds(
    local: tuple[Path, BuildReport], distributed: tuple[Path, BuildReport]
) -> None:
    (local_dir, local_report), (ray_dir, ray_report) = local, distributed
    assert ray_report.indexed == local_report.indexed == IMAGES
    assert ray_report.skipped == local_report.skipped and [s["source"] for s in ray_report.skipped] == [
        "broken.jpg"
    ]
    assert (
        ray_report.duplicates
        == local_report.duplicates
        == [{"source": "set3/zz-copy.png", "same_as": "set0/000.png"}]
    )
    a, b = Index(local_dir), Index(ray_dir)
    try:
        rows = list(range(a.count))
        assert [(r.id, r.source, r.labels[0][0]) for r in a.records(rows)] == [
            (r.id, r.source, r.labels[0][0]) for r in b.records(rows)
        ]
        assert cosines(np.asarray(a.vectors), np.asarray(b.vectors)).min() >= 0.9999
        assert cosines(np.asarray(a.features), np.asarray(b.features)).min() >= 0.9999
        raw_a, raw_b = np.load(a.path / "text_vectors.npy"), np.load(b.path / "text_vectors.npy")
        assert cosines(raw_a, raw_b).min() >= 0.9999
        assert sorted(p.name for p in (b.path / "thumbnails").iterdir()) == sorted(
            p.name for p in (a.path / "thumbnails").iterdir()
        )
        assert (a.meta.build.engine, b.meta.build.engine) == ("local", "ray")
        with a.manifest() as one, b.manifest() as other:  # both store what the unnamed pictures borrow
            assert stored(one) is not None and stored(one) == stored(other)
    finally:
        a.close()
        b.close()


def test_ray_engine_reads_a_datasets_source_and_keeps_its_originals(
    cluster: None, pipeline: Pipeline, tmp_path: Path
) -> None:
    from datasets import Dataset, Image as ImageFeature

    pictures = [Image.new("RGB", (20 + i, 10), COLOURS[name]) for i, name in enumerate(COLOURS)]
    dataset = Dataset.from_dict({"image": pictures}).cast_column("image", ImageFeature())
    source = HFDatasetSource(dataset, "image", name="memory")
    engine = RayEngine(FakePipeline(tmp_path / "cache"), workers=1)
    report = build_index(
        source, tmp_path / "hf", pipeline, BuildConfig(workers=0), progress=False, engine=engine
    )
    assert report.indexed == 3
    service = service_over(Index(tmp_path / "hf"), pipeline.models, None)
    try:
        hit = service.search_text("blue thing", 1)[0]
        assert hit.record.source == "memory#2" and hit.record.width == 22
        with Image.open(service.index.original_path(hit.record)) as original:
            assert original.getpixel((0, 0)) == COLOURS["blue"]
    finally:
        service.close()


def test_milvus_lite_returns_the_matrix_backends_top_ten(
    local: tuple[Path, BuildReport], lite: str, pipeline: Pipeline
) -> None:
    matrix = Index(local[0])
    milvus = Index(local[0], SearchOptions(backend="milvus", milvus_uri=lite))
    try:
        assert milvus.searcher.kind == "milvus"
        by_matrix = service_over(matrix, pipeline.models, None)
        by_milvus = service_over(milvus, pipeline.models, None)
        for query in QUERIES:
            expected = [(hit.record.id, hit.score) for hit in by_matrix.search_text(query, 10)]
            assert [(hit.record.id, hit.score) for hit in by_milvus.search_text(query, 10)] == expected
        rng = np.random.default_rng(3)
        vectors = [np.asarray(matrix.vectors[row], dtype=np.float32) for row in (0, 17, 42)]
        vectors += list(rng.standard_normal((3, matrix.dim)).astype(np.float32))
        for vector in vectors:
            vector /= np.linalg.norm(vector)
            assert rank(milvus, vector, 10) == rank(matrix, vector, 10)
            assert rank(milvus, vector, 5, 5) == rank(matrix, vector, 10)[5:]
    finally:
        matrix.close()
        milvus.close()


def test_hnsw_collection_finds_the_same_top_ten(
    local: tuple[Path, BuildReport], pipeline: Pipeline, tmp_path: Path
) -> None:
    uri = str(tmp_path / "hnsw.db")
    export_index(local[0], uri, "pictures", index_type="HNSW")
    options = SearchOptions(backend="milvus", milvus_uri=uri, milvus_collection="pictures")
    matrix, milvus = Index(local[0]), Index(local[0], options)
    try:
        for row in range(0, IMAGES, 7):
            query = np.asarray(matrix.vectors[row], dtype=np.float32)
            assert rank(milvus, query, 10) == rank(matrix, query, 10)
    finally:
        matrix.close()
        milvus.close()


def test_service_answers_search_through_milvus(
    local: tuple[Path, BuildReport], lite: str, tmp_path: Path
) -> None:
    models = fake_models()
    answers = []
    for backend in ("matrix", "milvus"):
        settings = Settings(
            index_dir=local[0],
            cache_dir=tmp_path / "cache",
            device="cpu",
            vector_backend=backend,
            milvus_uri=lite,
        )
        with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
            wait_ready(client)
            response = client.get("/search", params={"q": "red thing", "top_k": 10})
            assert response.status_code == 200
            answers.append(response.json()["results"])
    assert len(answers[1]) == 10 and answers[1] == answers[0]


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        build_script.parse_args(
            ["--images", str(tmp_path), "--index-dir", str(tmp_path), "--ray-workers", "2"]
        )
    assert exited.value.code == 2


def test_service_refuses_an_index_that_was_not_exported(
    pictures: Path, pipeline: Pipeline, lite: str, tmp_path: Path
) -> None:
    index_dir = tmp_path / "fresh"
    build_index(FolderSource(pictures), index_dir, pipeline, CONFIG, progress=False)
    with pytest.raises(
        IndexUnavailable, match=r"has no collection images_\w+ .* export it: python -m app\.milvus"
    ):
        Index(index_dir, SearchOptions(backend="milvus", milvus_uri=lite))
    with pytest.raises(IndexUnavailable, match="no Milvus Lite database"):
        Index(index_dir, SearchOptions(backend="milvus", milvus_uri=str(tmp_path / "none.db")))
    with pytest.raises(IndexUnavailable, match=r"ending in \.db"):
        Index(index_dir, SearchOptions(backend="milvus", milvus_uri=str(tmp_path / "vectors.sqlite")))


def test_export_moves_the_alias_and_keeps_the_previous_build(
    pictures: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    uri = str(tmp_path / "moving.db")
    stamps = []
    for build in range(3):
        index_dir = tmp_path / f"build{build}"
        build_index(FolderSource(pictures), index_dir, pipeline, CONFIG, progress=False)
        export_index(index_dir, uri)
        stamps.append(stamp_of(index_dir))
    client = connect(uri)
    try:
        assert sorted(client.list_collections()) == sorted(collection_name("images", s) for s in stamps[1:])
        assert client.describe_alias("images")["collection_name"] == collection_name("images", stamps[2])
    finally:
        disconnect(client, uri)


def test_a_ray_build_reads_the_text_in_pictures_on_this_machine_after_its_encode(
    cluster: None, pipeline: Pipeline, tmp_path: Path
) -> None:
    folder = coloured_pictures(tmp_path / "photos", 4, seed=9)
    reader = CountingReader()  # the text stage runs here: this process's reader reads every picture
    engine = RayEngine(FakePipeline(tmp_path / "cache"), workers=1)
    source, config = FolderSource(folder), BuildConfig(workers=0)
    report = build_index(source, tmp_path / "index", pipeline, config, False, engine=engine, reader=reader)
    assert (report.encoded, report.text_read, len(reader.sizes)) == (4, 4, 4)
