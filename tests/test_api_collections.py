"""The collections API: filters, modes, exclude and like_ids, folders and metadata, and their 4xx."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.build import BuildConfig, build_index
from app.index import MANIFEST, live_path
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import make_collection, png_bytes, service_factory
from tests.fakes import COLOURS

CONFIG = BuildConfig(pca_dim=0, workers=0)


@pytest.fixture(scope="module")
def photos_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the photo collection of tests/conftest.py."""
    photos = make_collection(tmp_path_factory.mktemp("photos"))
    index_dir = tmp_path_factory.mktemp("photos-index") / "index"
    build_index(FolderSource(photos), index_dir, pipeline, CONFIG, progress=False)
    return index_dir


def client_over(index_dir: Path, models: Models, cache: Path) -> TestClient:
    """A started client over an index (leave it with `with`)."""
    settings = Settings(index_dir=index_dir, cache_dir=cache, device="cpu", dedup_threshold=0)
    return TestClient(create_app(settings, factory=service_factory(models, cache)))


@pytest.fixture(scope="module")
def client(
    photos_index: Path, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A client over the photo index."""
    with client_over(photos_index, models, tmp_path_factory.mktemp("cache")) as client:
        assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        yield client


def post(client: TestClient, **body: Any) -> Any:
    """POST /search, 200 expected; the JSON body."""
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def sources(body: Any) -> list[str]:
    """The results' sources."""
    return [result["source"] for result in body["results"]]


def test_post_filters_mode_and_result_fields(client: TestClient) -> None:
    body = post(client, query="eiffel tower")
    first = body["results"][0]
    assert first["source"] == "paris/eiffel-tower.jpg"
    assert first["folder"] == "paris" and first["taken_at"] == "2019-07-14T10:00:00"
    assert first["matched"] == ["semantic", "name"]
    filtered = post(client, query="thing", filters={"path_prefix": "2020", "formats": ["png"]})
    assert sources(filtered) == ["2020/red-car.png"] and filtered["total"] == 1
    dated = post(client, query="thing", filters={"taken_after": "2020-08-01", "taken_before": "2020-08-01"})
    assert sources(dated) == ["2020/beach/dog_on_beach.jpg"]
    assert sources(post(client, query="thing", filters={"has_gps": True})) == ["paris/eiffel-tower.jpg"]
    assert sources(post(client, query="thing", filters={"min_height": 250})) == [
        "2020/beach/dog_on_beach.jpg"
    ]
    lexical = post(client, query="beach", mode="lexical")
    assert set(sources(lexical)) == {"2020/beach/dog_on_beach.jpg", "2020/beach/sunset.webp"}
    assert all("folder" in result["matched"] for result in lexical["results"])


def test_get_search_takes_folder_dates_mode_and_not(client: TestClient) -> None:
    params = {"q": "thing", "folder": "2020", "after": "2020-08-01"}
    found = client.get("/search", params=params)
    assert found.status_code == 200, found.text
    assert set(sources(found.json())) == {"2020/beach/dog_on_beach.jpg", "2020/beach/sunset.webp"}
    plain = client.get("/search", params={"q": "thing", "mode": "semantic"}).json()
    minus = client.get(
        "/search", params=[("q", "thing"), ("mode", "semantic"), ("not", "red thing"), ("not", "blue thing")]
    ).json()
    greens = {"paris/eiffel-tower.jpg", "paris/louvre.png"}
    assert set(sources(minus)[:2]) == greens != set(sources(plain)[:2])
    arithmetic = client.get(
        "/search", params={"q": "thing - red thing - blue thing", "mode": "semantic"}
    ).json()
    assert sources(arithmetic) == sources(minus)


def test_search_by_image_takes_folder_and_dates(client: TestClient) -> None:
    def look_alike(**form: str) -> list[str]:
        upload = {"image": ("q.png", png_bytes(COLOURS["blue"]), "image/png")}
        response = client.post("/search/image", files=upload, data=form)
        assert response.status_code == 200, response.text
        return sources(response.json())

    assert set(look_alike()[:2]) == {"2020/beach/dog_on_beach.jpg", "a8f3c2.jpg"}  # the blue ones
    assert set(look_alike(folder="paris")) == {"paris/eiffel-tower.jpg", "paris/louvre.png"}
    assert look_alike(folder="2020", before="2020-05-31") == ["2020/red-car.png"]
    assert look_alike(before="2018-12-31") == ["a8f3c2.jpg"]
    bad = client.post(
        "/search/image",
        files={"image": ("q.png", png_bytes(COLOURS["blue"]), "image/png")},
        data={"after": "2020-13-01"},
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("after: '2020-13-01'")


def test_like_ids_alone_and_refined_with_text(client: TestClient) -> None:
    for result in post(client, query="thing")["results"]:
        like = post(client, like_ids=[result["id"]])
        assert like["results"][0]["id"] == result["id"] and like["query"] == ""
        by_get = client.get("/search", params={"like": result["id"]}).json()
        assert by_get["results"][0]["id"] == result["id"]
    car = next(r for r in post(client, query="car")["results"] if r["source"] == "2020/red-car.png")
    refined = post(client, query="blue thing", like_ids=[car["id"]], mode="semantic")
    assert sources(refined)[2:4] in (
        ["2020/red-car.png", "2020/beach/sunset.webp"],
        ["2020/beach/sunset.webp", "2020/red-car.png"],
    )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": "x", "filters": {"taken_after": "2019-02-30"}}, 422, "taken_after"),
        ({"query": "x", "filters": {"taken_after": "last summer"}}, 422, "taken_after"),
        (
            {"query": "x", "filters": {"taken_after": "2020-01-02", "taken_before": "2020-01-01"}},
            422,
            "later than",
        ),
        ({"query": "x", "filters": {"formats": ["heic2"]}}, 422, "formats"),
        ({"query": "x", "filters": {"path_prefix": "../etc"}}, 422, "inside the collection"),
        ({"query": "x", "filters": {"colour": "red"}}, 422, "colour"),
        ({"like_ids": ["0123456789abcdef"]}, 404, "like_ids: no image with id"),
        ({"like_ids": ["../../etc/passwd"]}, 404, "like_ids"),
        ({"query": "red", "mode": "lexical", "like_ids": ["0123456789abcdef"]}, 404, "like_ids: no image"),
        ({}, 422, "nothing to search for"),
        ({"exclude": ["red"]}, 422, "nothing to search for"),
        ({"query": "x", "exclude": ["  "]}, 422, "exclude"),
        ({"query": "cat +"}, 422, "followed by a text"),
        ({"query": "x", "mode": "fuzzy"}, 422, "mode"),
        ({"query": "x", "surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_searches_are_clear_4xx(
    client: TestClient, body: dict[str, Any], status: int, words: str
) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == status, response.text
    assert words in response.text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": "x", "after": "2019-13-01"}, "after: '2019-13-01' is not an ISO date"),
        ({"q": "x", "after": "yesterday"}, "after"),
        ({"q": "x", "after": "2020-02-02", "before": "2020-02-01"}, "later than"),
        ({"q": "x", "folder": "a/../../b"}, "inside the collection"),
        ({"q": "x", "not": ""}, "not"),
        ({"q": "x", "before": ""}, "before"),  # a date or nothing: an empty value is not "no bound"
    ],
)
def test_bad_get_searches_are_422(client: TestClient, params: dict[str, str], words: str) -> None:
    response = client.get("/search", params=params)
    assert response.status_code == 422, response.text
    assert words in response.text


def test_folders_and_metadata(client: TestClient) -> None:
    folders = client.get("/folders")
    assert folders.status_code == 200
    assert folders.json()["folders"] == [
        {"folder": "", "count": 1},
        {"folder": "2020", "count": 1},
        {"folder": "2020/beach", "count": 2},
        {"folder": "paris", "count": 2},
    ]
    eiffel = post(client, query="eiffel tower")["results"][0]
    meta = client.get(f"/images/{eiffel['id']}/metadata")
    assert meta.status_code == 200, meta.text
    body = meta.json()
    assert body["name"] == "eiffel-tower.jpg" and body["folder"] == "paris" and body["format"] == "JPEG"
    assert body["taken_at"] == "2019-07-14T10:00:00" and body["taken_at_source"] == "exif_original"
    assert body["latitude"] == pytest.approx(48.858, abs=1e-3) and body["keywords"] == []
    assert client.get("/images/0123456789abcdef/metadata").status_code == 404


def test_an_old_index_serves_search_and_answers_409_for_the_rest(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    photos = make_collection(tmp_path / "photos")
    build_index(FolderSource(photos), tmp_path / "index", pipeline, CONFIG, progress=False)
    with sqlite3.connect(live_path(tmp_path / "index") / MANIFEST) as db:
        db.executescript("DROP TABLE metadata; DROP TABLE lexical_words; DROP TABLE lexical_grams;")
    db.close()
    with client_over(tmp_path / "index", models, tmp_path / "cache") as client:
        assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        found = post(client, query="eiffel tower")
        assert found["results"] and all(r["matched"] == ["semantic"] for r in found["results"])
        assert found["results"][0]["taken_at"] is None
        for response in (
            client.post("/search", json={"query": "x", "filters": {"path_prefix": "paris"}}),
            client.post("/search", json={"query": "x", "mode": "lexical"}),
            client.get("/folders"),
            client.get(f"/images/{found['results'][0]['id']}/metadata"),
        ):
            assert response.status_code == 409, response.text
            assert "imgsearch build" in response.json()["detail"] and "--update" in response.json()["detail"]
