"""`imgsearch search` over a collection: --folder, --after, --before, --mode, --not, --like, `a + b - c`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import cli
from app.assembly import ServiceFactory
from app.build import BuildConfig, build_index
from app.pipeline import Models, Pipeline
from app.sources import FolderSource
from tests.conftest import make_collection, service_factory

LINE = re.compile(r"^\s*(\d+)  (-?\d\.\d{4})  ([0-9a-f]{16})  (\S+)(  \(\+\d+ near-duplicates?\))?$")


@pytest.fixture(scope="module")
def photos_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the photo collection of tests/conftest.py."""
    photos = make_collection(tmp_path_factory.mktemp("photos"))
    index_dir = tmp_path_factory.mktemp("photos-index") / "index"
    build_index(FolderSource(photos), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    return index_dir


@pytest.fixture
def factory(models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceFactory:
    """The service over the fake models, every result shown (the collection repeats colours)."""
    monkeypatch.setenv("IMGSEARCH_DEDUP_THRESHOLD", "0")
    return service_factory(models, tmp_path / "cache")


def search(
    argv: list[str], index_dir: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> list[tuple[str, str]]:
    """(id, source) of each printed result."""
    assert cli.main(["search", *argv, "--index-dir", str(index_dir)], factory=factory) == 0
    found = [LINE.match(line) for line in capsys.readouterr().out.splitlines()]
    assert all(found)
    return [(match.group(3), match.group(4)) for match in found if match]


def test_filters_modes_and_arithmetic(
    photos_index: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    def sources(*argv: str) -> list[str]:
        return [source for _, source in search(list(argv), photos_index, factory, capsys)]

    assert sources("eiffel tower")[0] == "paris/eiffel-tower.jpg"
    assert sources("eiffel tower", "--mode", "lexical") == ["paris/eiffel-tower.jpg"]
    assert set(sources("thing", "--folder", "2020/beach")) == {
        "2020/beach/dog_on_beach.jpg",
        "2020/beach/sunset.webp",
    }
    assert sources("thing", "--after", "2020-08-01", "--before", "2020-08-01") == [
        "2020/beach/dog_on_beach.jpg"
    ]
    minus = sources("thing", "--mode", "semantic", "--not", "red thing", "--not", "blue thing")
    assert set(minus[:2]) == {"paris/eiffel-tower.jpg", "paris/louvre.png"}
    assert sources("thing - red thing - blue thing", "--mode", "semantic") == minus


def test_like_alone_starts_with_the_image(
    photos_index: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    for image_id, _ in search(["thing"], photos_index, factory, capsys):
        assert search(["--like", image_id], photos_index, factory, capsys)[0][0] == image_id


def test_bad_filters_are_one_line_errors(
    photos_index: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, words in (
        (["thing", "--after", "2020-13-01"], "--after: '2020-13-01' is not an ISO date"),
        (["thing", "--after", "2021-01-01", "--before", "2020-01-01"], "later than"),
        (["cat +"], "followed by a text"),
        (["--like", "0123456789abcdef"], "like_ids: no image with id"),
    ):
        assert cli.main(["search", *argv, "--index-dir", str(photos_index)], factory=factory) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: ") and words in line
