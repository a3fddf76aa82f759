"""One 0–1 relevance scale, a clear look first, and results sorted by date above a relevance cutoff."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import cli
from app.assembly import service_over
from app.build import BuildConfig, build_index
from app.errors import BadQuery
from app.fusion import fuse_parts
from app.index import MANIFEST, Index, live_path
from app.main import create_app
from app.options import DATE_SORT_MIN_SCORE
from app.pipeline import Models, Pipeline
from app.query import CompoundQuery, Part
from app.service import Order, SearchRequest, SearchService
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import dated_exif, png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS

CONFIG = BuildConfig(pca_dim=0, workers=0)
# The nine-photo case with the fake models, which see colours: six pictures that are not red in a
# folder named after the query, the one red picture under a camera's name.
CLEAR_LOOK = {
    **{f"red/{name}.jpg": colour for name, colour in [
        ("astronaut", (20, 200, 20)), ("rocket", (20, 20, 220)), ("coffee", (30, 190, 40)),
        ("camera", (40, 40, 200)), ("coins", (20, 180, 60)), ("page", (60, 30, 210)),
    ]},
    "misc/IMG_0001.jpg": COLOURS["red"],
    "misc/IMG_0002.jpg": (25, 60, 200),
    "misc/IMG_0003.jpg": (50, 190, 30),
}  # fmt: skip
# Pictures and when they were taken: three red ones, and newer ones of other colours.
DATED = {
    "IMG_0001.jpg": ("red", "2018:06:01 10:00:00"),
    "IMG_0002.jpg": ("red", "2021:06:01 10:00:00"),
    "IMG_0003.jpg": ("red", "2019:06:01 10:00:00"),
    "IMG_0004.jpg": ("blue", "2023:06:01 10:00:00"),
    "IMG_0005.jpg": ("green", "2024:06:01 10:00:00"),
    "IMG_0006.jpg": ("blue", "2022:06:01 10:00:00"),
}
NEWEST_REDS = ["IMG_0002.jpg", "IMG_0003.jpg", "IMG_0001.jpg"]


def build(folder: Path, index_dir: Path, pipeline: Pipeline) -> Path:
    """An index of `folder` built with the fake models."""
    build_index(FolderSource(folder), index_dir, pipeline, CONFIG, progress=False)
    return index_dir


@pytest.fixture(scope="module")
def clear_look(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchService]:
    """A service over CLEAR_LOOK."""
    folder = tmp_path_factory.mktemp("clear-look")
    for i, (name, colour) in enumerate(CLEAR_LOOK.items()):  # sizes differ: no two files are identical
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes(colour, (64 + i, 48), "JPEG"))
    index_dir = build(folder, tmp_path_factory.mktemp("clear-look-index") / "index", pipeline)
    service = service_over(Index(index_dir), pipeline.models, None)
    yield service
    service.close()


@pytest.fixture(scope="module")
def dated_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of DATED (EXIF dates), plus an undated red picture (its date removed from the catalog)."""
    folder = tmp_path_factory.mktemp("dated")
    for i, (name, (colour, taken)) in enumerate(DATED.items()):
        Image.new("RGB", (60 + i, 40), COLOURS[colour]).save(folder / name, "JPEG", exif=dated_exif(taken))
    (folder / "IMG_0007.jpg").write_bytes(png_bytes(COLOURS["red"], (70, 40), "JPEG"))
    index_dir = build(folder, tmp_path_factory.mktemp("dated-index") / "index", pipeline)
    connection = sqlite3.connect(live_path(index_dir) / MANIFEST)
    with connection:
        connection.execute("UPDATE metadata SET taken_at = NULL WHERE name = 'IMG_0007.jpg'")
    connection.close()
    return index_dir


@pytest.fixture(scope="module")
def dated(dated_index: Path, models: Models) -> Iterator[SearchService]:
    """A service over the dated index."""
    service = service_over(Index(dated_index), models, None)
    yield service
    service.close()


@pytest.fixture
def client(dated_index: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over the dated index."""
    # Folding off: the fake model sees only colour, so the red pictures are near-duplicates to it.
    cache = tmp_path / "cache"
    settings = Settings(index_dir=dated_index, cache_dir=cache, device="cpu", dedup_threshold=0.0)
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as test_client:
        wait_ready(test_client)
        yield test_client


def search(service: SearchService, query: str, mode: Any = "hybrid", **order: Any) -> list[Any]:
    """The hits of a plain text search."""
    request = SearchRequest(CompoundQuery(positive=(Part(query),)), mode=mode, top_k=10, order=Order(**order))
    return service.search(request).hits


def names(results: list[dict[str, Any]]) -> list[str]:
    """The file names of API results."""
    return [os.path.basename(result["source"]) for result in results]


# -- one scale, a clear look first --------------------------------------------------------------------


def test_a_folder_named_after_the_query_does_not_bury_the_picture_that_clearly_shows_it(
    clear_look: SearchService,
) -> None:
    hits = search(clear_look, "red")
    assert hits[0].record.source == "misc/IMG_0001.jpg"  # on main: 7th, behind the six red/ pictures
    assert hits[0].score == 1.0 and hits[0].scores == {"semantic": 1.0, "lexical": 0.0, "propagated": 0.0}
    assert "folder" in hits[1].matched and hits[1].scores["lexical"] > 0  # the folder still counts
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= score <= 1.0 for score in scores)


def test_a_full_name_match_still_rises_over_a_clear_look() -> None:
    vector = [("cat", 0.80), ("a", 0.20), ("b", 0.18), ("c", 0.15)]  # the best look leads by 0.92
    weak = fuse_parts(vector, [("b", 9.0, 1.0, True)])  # a folder `cats/`
    assert weak[0].key == "cat" and weak[0].score == 1.0
    full = fuse_parts(vector, [("c", 9.0, 1.0, False)])  # cat.jpg
    assert [found.key for found in full][:2] == ["c", "cat"]
    assert full[0].score == 1.0 and full[0].lexical == 1.0 and full[1].semantic == 1.0
    unguarded = fuse_parts(vector, [("b", 9.0, 1.0, True)], lead=None)
    assert unguarded[0].key == "b"  # what main did


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "lexical"])
def test_every_mode_scores_on_zero_to_one_in_the_order_of_the_ranking(
    clear_look: SearchService, mode: str
) -> None:
    hits = search(clear_look, "red", mode)
    scores = [hit.score for hit in hits]
    assert hits and scores == sorted(scores, reverse=True) and scores[0] == 1.0 and min(scores) >= 0.0
    expected = {
        "hybrid": {"semantic", "lexical", "propagated"},
        "semantic": {"semantic"},
        "lexical": {"lexical"},
    }[mode]
    assert all(set(hit.scores) == expected for hit in hits)


# -- sort and cutoff: the service, POST, GET, /search/image, the CLI ---------------------------------


def test_a_date_sort_lists_the_matches_by_date_not_everything(dated: SearchService) -> None:
    newest = search(dated, "red thing", sort="newest")
    assert [hit.record.source for hit in newest] == [*NEWEST_REDS, "IMG_0007.jpg"]  # undated last
    assert all(hit.score >= DATE_SORT_MIN_SCORE for hit in newest)
    oldest = search(dated, "red thing", sort="oldest")
    assert [hit.record.source for hit in oldest] == [*NEWEST_REDS[::-1], "IMG_0007.jpg"]
    everything = search(dated, "red thing", sort="newest", min_score=0.0)
    assert [hit.record.source for hit in everything][:2] == ["IMG_0005.jpg", "IMG_0004.jpg"]


def test_min_score_cuts_the_relevance_order_too(dated: SearchService) -> None:
    request = SearchRequest(CompoundQuery(positive=(Part("red thing"),)), order=Order(min_score=0.5))
    found = dated.search(request)
    assert {hit.record.source for hit in found.hits} == {*NEWEST_REDS, "IMG_0007.jpg"}
    assert found.total == 4  # the images above the cutoff, not the whole index


def test_post_search_sorts_by_date_above_the_cutoff(client: TestClient) -> None:
    response = client.post("/search", json={"query": "red thing", "sort": "newest"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert names(body["results"]) == [*NEWEST_REDS, "IMG_0007.jpg"] and body["total"] == 4
    dates = [result["taken_at"] for result in body["results"]]
    assert dates[:3] == sorted(dates[:3], reverse=True) and dates[3] is None
    first = body["results"][0]
    assert 0.0 <= first["score"] <= 1.0 and set(first["scores"]) == {"semantic", "lexical", "propagated"}
    response = client.post("/search", json={"query": "red thing", "sort": "oldest", "min_score": 0.9})
    assert names(response.json()["results"])[:3] == NEWEST_REDS[::-1]


def test_get_search_sorts_by_date_above_the_cutoff(client: TestClient) -> None:
    body = client.get("/search", params={"q": "red thing", "sort": "newest"}).json()
    assert names(body["results"]) == [*NEWEST_REDS, "IMG_0007.jpg"]
    body = client.get("/search", params={"q": "red thing", "sort": "oldest"}).json()
    assert names(body["results"]) == [*NEWEST_REDS[::-1], "IMG_0007.jpg"]
    relevance = client.get("/search", params={"q": "red thing", "min_score": "0.5"}).json()
    assert sorted(names(relevance["results"])) == sorted([*NEWEST_REDS, "IMG_0007.jpg"])
    scores = [result["score"] for result in relevance["results"]]
    assert scores == sorted(scores, reverse=True) and all(score >= 0.5 for score in scores)


def test_search_by_image_sorts_by_date_above_the_cutoff(client: TestClient) -> None:
    upload = {"image": ("red.png", png_bytes(COLOURS["red"]), "image/png")}
    response = client.post("/search/image", files=upload, data={"sort": "newest"})
    assert response.status_code == 200, response.text
    assert names(response.json()["results"]) == [*NEWEST_REDS, "IMG_0007.jpg"]
    response = client.post("/search/image", files=upload, data={"sort": "oldest", "min_score": "0.5"})
    assert names(response.json()["results"]) == [*NEWEST_REDS[::-1], "IMG_0007.jpg"]


@pytest.mark.parametrize(
    ("how", "given", "named"),
    [
        ("post", {"sort": "random"}, "sort"),
        ("post", {"min_score": 1.5}, "min_score"),
        ("post", {"min_score": -0.1}, "min_score"),
        ("post", {"min_score": True}, "min_score"),
        ("get", {"sort": "date"}, "sort"),
        ("get", {"min_score": "2"}, "min_score"),
        ("get", {"min_score": "high"}, "min_score"),
        ("image", {"sort": "latest"}, "sort"),
        ("image", {"min_score": "-1"}, "min_score"),
    ],
)
def test_an_unknown_sort_or_a_score_off_the_scale_is_a_422_naming_it(
    client: TestClient, how: str, given: dict[str, Any], named: str
) -> None:
    if how == "post":
        response = client.post("/search", json={"query": "red thing", **given})
    elif how == "get":
        response = client.get("/search", params={"q": "red thing", **given})
    else:
        upload = {"image": ("red.png", png_bytes(COLOURS["red"]), "image/png")}
        response = client.post("/search/image", files=upload, data=given)
    assert response.status_code == 422, response.text
    assert named in response.text


def test_the_service_refuses_a_bad_order() -> None:
    with pytest.raises(BadQuery, match="min_score"):
        Order(min_score=1.01)
    with pytest.raises(BadQuery, match="sort"):
        Order(sort="latest")  # type: ignore[arg-type]


def test_cli_sorts_by_date_above_the_cutoff(
    dated_index: Path,
    models: Models,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGSEARCH_DEDUP_THRESHOLD", "0")  # as the client's
    factory = service_factory(models, tmp_path / "cache")
    argv = ["search", "red thing", "--index-dir", str(dated_index), "--sort", "newest"]
    assert cli.main(argv, factory=factory) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == [*NEWEST_REDS, "IMG_0007.jpg"]
    assert "taken 2021-06-01T10:00:00" in lines[0] and lines[-1].endswith("taken unknown")
    argv = ["search", "red thing", "--index-dir", str(dated_index), "--sort", "oldest", "--min-score", "0.5"]
    assert cli.main(argv, factory=factory) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()][:3] == NEWEST_REDS[::-1]


@pytest.mark.parametrize("given", [["--min-score", "1.5"], ["--min-score", "x"], ["--sort", "latest"]])
def test_cli_refuses_a_bad_sort_or_score(
    dated_index: Path, capsys: pytest.CaptureFixture[str], given: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["search", "red thing", "--index-dir", str(dated_index), *given])
    assert exited.value.code == 2
    assert given[0] in capsys.readouterr().err
