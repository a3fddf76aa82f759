"""Places from GPS and the dates and places typed in a query, through every interface.

A camera roll of opaque names (IMG_000N.jpg): two photos taken in Florence, one in Lisbon, the rest
without GPS; EXIF dates in 2018, 2019 and 2020. Nothing in a name or folder says where or when.
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, TiffImagePlugin

from app import cli
from app.assembly import ServiceFactory
from app.build import BuildConfig, build_index
from app.index import MANIFEST, live_path
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import png_bytes, service_factory
from tests.fakes import COLOURS

FLORENCE, LISBON = (43.7731, 11.2560), (38.7139, -9.1394)
# name → (colour, EXIF date or None, GPS position or None)
ROLL: dict[str, tuple[str, str | None, tuple[float, float] | None]] = {
    "camera/IMG_0001.jpg": ("red", "2019:07:14 10:00:00", FLORENCE),
    "camera/IMG_0002.jpg": ("green", "2019:07:15 11:00:00", (43.7696, 11.2558)),  # Florence too
    "camera/IMG_0003.jpg": ("green", "2018:08:10 12:00:00", LISBON),
    "camera/IMG_0004.jpg": ("blue", "2018:03:03 09:00:00", None),
    "camera/IMG_0005.jpg": ("blue", "2020:01:01 08:00:00", None),
    "camera/IMG_0006.jpg": ("red", None, None),  # no EXIF at all: its date is the file's (2021)
}
IN_FLORENCE = {"camera/IMG_0001.jpg", "camera/IMG_0002.jpg"}


def dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Degrees, minutes, seconds as EXIF rationals."""
    value = abs(value)
    degrees, minutes = int(value), int(value * 60) % 60
    seconds = round((value * 3600) % 60, 2)
    return tuple(TiffImagePlugin.IFDRational(v) for v in (degrees, minutes, seconds))


def exif_of(taken: str, position: tuple[float, float] | None) -> Image.Exif:
    """EXIF with a DateTimeOriginal and, when given, a GPS position."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken
    if position is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if position[0] >= 0 else "S"), dms(position[0])
        gps[3], gps[4] = ("E" if position[1] >= 0 else "W"), dms(position[1])
    return exif


def make_roll(root: Path) -> Path:
    """The camera roll of the module docstring."""
    for name, (colour, taken, position) in ROLL.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"exif": exif_of(taken, position)} if taken else {}
        Image.new("RGB", (64, 48), COLOURS[colour]).save(path, format="JPEG", **extra)
        stamp = datetime(2021, 6, 1).timestamp()
        os.utime(path, (stamp, stamp))
    return root


@pytest.fixture(scope="module")
def roll_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the camera roll."""
    index_dir = tmp_path_factory.mktemp("roll-index") / "index"
    roll = make_roll(tmp_path_factory.mktemp("roll"))
    build_index(FolderSource(roll), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    return index_dir


@pytest.fixture(scope="module")
def client(
    roll_index: Path, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A ready client over the roll, every result shown (no folding of the same colours)."""
    cache = tmp_path_factory.mktemp("cache")
    settings = Settings(index_dir=roll_index, cache_dir=cache, device="cpu", dedup_threshold=0)
    with TestClient(create_app(settings, factory=service_factory(models, cache))) as test_client:
        assert test_client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        yield test_client


def post(client: TestClient, **body: Any) -> Any:
    """POST /search, 200 expected; the JSON body."""
    response = client.post("/search", json={"top_k": 20, **body})
    assert response.status_code == 200, response.text
    return response.json()


def get(client: TestClient, **params: Any) -> Any:
    """GET /search, 200 expected; the JSON body."""
    response = client.get("/search", params={"top_k": 20, **params})
    assert response.status_code == 200, response.text
    return response.json()


def sources(body: Any) -> list[str]:
    """The results' sources, best first."""
    return [result["source"] for result in body["results"]]


def ids(client: TestClient) -> dict[str, str]:
    """Image id by source."""
    return {r["source"]: r["id"] for r in post(client, query="thing", understand=False)["results"]}


def test_metadata_names_the_place_of_a_gps_photo_and_none_without(client: TestClient) -> None:
    known = ids(client)
    florence = client.get(f"/images/{known['camera/IMG_0001.jpg']}/metadata").json()
    assert florence["place"] == {
        "city": "Florence",
        "region": "Tuscany",
        "country": "Italy",
        "country_code": "IT",
        "local_city": None,
    }
    lisbon = client.get(f"/images/{known['camera/IMG_0003.jpg']}/metadata").json()
    assert (lisbon["place"]["city"], lisbon["place"]["country"]) == ("Lisbon", "Portugal")
    assert client.get(f"/images/{known['camera/IMG_0004.jpg']}/metadata").json()["place"] is None


@pytest.mark.parametrize("query", ["florence", "Florence", "photos from italy", "pictures taken in Italy"])
def test_a_place_alone_finds_the_photos_taken_there(client: TestClient, query: str) -> None:
    for body in (post(client, query=query), get(client, q=query)):
        assert set(sources(body)) == IN_FLORENCE and body["total"] == 2
        assert all("place" in result["matched"] for result in body["results"])
        assert body["understood"]["place"]["use"] == "filter"
        assert body["understood"]["read"] == [
            {"kind": "place", "phrase": body["understood"]["read"][0]["phrase"]}
        ]


def test_without_reading_a_place_name_still_matches_the_place_field(client: TestClient) -> None:
    for body in (
        post(client, query="florence", understand=False),
        get(client, q="florence", understand="false"),
    ):
        assert body["understood"] is None and body["total"] == len(ROLL)
        assert set(sources(body)[:2]) == IN_FLORENCE
        assert [("place" in r["matched"]) for r in body["results"]] == [True, True] + [False] * (
            len(ROLL) - 2
        )
    lexical = post(client, query="italy", mode="lexical")
    assert set(sources(lexical)) == IN_FLORENCE


def test_a_place_beside_other_words_is_a_preference(client: TestClient) -> None:
    body = post(client, query="green thing in Florence")
    assert body["understood"]["text"] == "green thing"
    assert body["understood"]["place"]["use"] == "preference" and body["total"] == len(ROLL)
    assert sources(body)[0] == "camera/IMG_0002.jpg"  # green and in Florence, before the green Lisbon one
    assert sources(body).index("camera/IMG_0001.jpg") < sources(body).index("camera/IMG_0004.jpg")


def test_the_place_filter_on_every_interface(client: TestClient, roll_index: Path, models: Models) -> None:
    assert set(sources(post(client, query="thing", filters={"place": "ITALY"}))) == IN_FLORENCE
    assert set(sources(get(client, q="thing", place="tuscany"))) == IN_FLORENCE
    assert sources(get(client, q="thing", place="Lisboa")) == []  # the gazetteer's English name only
    assert sources(get(client, q="thing", place="lisbon")) == ["camera/IMG_0003.jpg"]
    assert sources(get(client, q="thing", place="nice")) == []  # whole names: not Venice, not Florence
    upload = {"image": ("q.png", png_bytes(COLOURS["red"]), "image/png")}
    by_image = client.post("/search/image", files=upload, data={"place": "Florence", "top_k": "20"})
    assert by_image.status_code == 200 and set(sources(by_image.json())) == IN_FLORENCE
    specs = {spec["name"]: spec for spec in client.get("/search/filters").json()["filters"]}
    assert (specs["place"]["param"], specs["place"]["control"]) == ("place", "text")


def test_dates_typed_in_the_query_filter_and_show(client: TestClient) -> None:
    body = post(client, query="blue thing in 2018")
    assert body["understood"]["text"] == "blue thing"
    assert (body["understood"]["taken_after"], body["understood"]["taken_before"]) == (
        "2018-01-01",
        "2018-12-31",
    )
    assert sources(body) == ["camera/IMG_0004.jpg", "camera/IMG_0003.jpg"]
    summer = get(client, q="thing from July 2019")
    assert set(sources(summer)) == IN_FLORENCE
    assert sources(post(client, query="photos from 2018 to 2019 in Lisbon")) == ["camera/IMG_0003.jpg"]


def test_reading_off_and_look_alikes_leave_the_query_alone(client: TestClient) -> None:
    off = post(client, query="blue thing in 2018", understand=False)
    assert off["understood"] is None and off["total"] == len(ROLL)
    for query in ("1984 poster", "may flowers", "march of the penguins"):
        body = post(client, query=query)
        assert body["understood"]["read"] == [] and body["understood"]["text"] == query
        assert body["total"] == len(ROLL)


def test_explicit_filters_win_over_what_was_read_and_both_show(client: TestClient) -> None:
    body = post(client, query="thing in 2018", filters={"taken_after": "2020-01-01"})
    assert body["understood"]["taken_after"] == "2018-01-01"  # what was read shows…
    assert any("not applied" in note for note in body["understood"]["notes"])
    assert set(sources(body)) == {"camera/IMG_0005.jpg", "camera/IMG_0006.jpg"}  # …the explicit one applies
    placed = post(client, query="photos from italy", filters={"place": "Portugal"})
    assert sources(placed) == ["camera/IMG_0003.jpg"]


def test_a_today_relative_date_counts_from_the_service_clock(client: TestClient) -> None:
    service = client.app.state.runtime.service  # type: ignore[attr-defined]
    service.today = lambda: date(2019, 10, 1)
    try:
        body = post(client, query="thing last summer")
    finally:
        service.today = date.today
    assert (body["understood"]["taken_after"], body["understood"]["taken_before"]) == (
        "2019-06-01",
        "2019-08-31",
    )
    assert set(sources(body)) == IN_FLORENCE


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"json": {"query": "x", "understand": "maybe"}}, "understand"),
        ({"json": {"query": "x", "filters": {"place": "x" * 201}}}, "place"),
        ({"json": {"query": "x", "filters": {"place": ["italy"]}}}, "place"),
        ({"params": {"q": "x", "understand": "maybe"}}, "understand"),
        ({"params": {"q": "x", "place": "x" * 201}}, "place"),
    ],
)
def test_bad_values_are_4xx(client: TestClient, request_kwargs: dict[str, Any], fragment: str) -> None:
    if "json" in request_kwargs:
        response = client.post("/search", **request_kwargs)
    else:
        response = client.get("/search", **request_kwargs)
    assert response.status_code == 422 and fragment in response.text


def test_describe_adds_place_and_date_from_the_index_only(client: TestClient) -> None:
    known = ids(client)

    def described(source: str) -> str:
        response = client.post("/describe", json={"image_id": known[source]})
        assert response.status_code == 200, response.text
        return str(response.json()["description"])

    assert described("camera/IMG_0001.jpg").endswith(", taken in Florence, Italy, in July 2019.")
    assert described("camera/IMG_0004.jpg").endswith(", taken in March 2018.")
    assert "taken" not in described("camera/IMG_0006.jpg")  # no GPS, and a file time is no EXIF date


@pytest.fixture
def factory(models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceFactory:
    """The service over the fake models, every result shown."""
    monkeypatch.setenv("IMGSEARCH_DEDUP_THRESHOLD", "0")
    return service_factory(models, tmp_path / "cache")


def cli_search(
    argv: list[str], index_dir: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], str]:
    """(sources printed, stderr) of `imgsearch search`."""
    assert cli.main(["search", *argv, "--top-k", "20", "--index-dir", str(index_dir)], factory=factory) == 0
    out = capsys.readouterr()
    return [line.split()[3] for line in out.out.splitlines()], out.err


def test_cli_reads_places_and_dates_and_takes_place(
    roll_index: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    found, said = cli_search(["photos from italy"], roll_index, factory, capsys)
    assert set(found) == IN_FLORENCE and "place Italy (filter)" in said
    found, said = cli_search(["blue thing in 2018"], roll_index, factory, capsys)
    assert found == ["camera/IMG_0004.jpg", "camera/IMG_0003.jpg"] and "2018-01-01 to 2018-12-31" in said
    found, said = cli_search(["blue thing in 2018", "--no-understand"], roll_index, factory, capsys)
    assert len(found) == len(ROLL) and "read:" not in said
    found, _ = cli_search(["thing", "--place", "Florence"], roll_index, factory, capsys)
    assert set(found) == IN_FLORENCE


def test_cli_says_which_reading_kept_nothing(
    roll_index: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    found, said = cli_search(["blue thing in 1990"], roll_index, factory, capsys)
    assert found == [] and "hint: the dates read from the query kept no image" in said
    found, said = cli_search(["blue thing in 1990", "--no-understand"], roll_index, factory, capsys)
    assert found and "hint:" not in said


def test_place_of_a_photo_upload_is_read_from_its_exif() -> None:
    """The EXIF this module writes carries the position it was given (what the index reads)."""
    from app.metadata import read_bytes_metadata

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="JPEG", exif=exif_of("2019:07:14 10:00:00", LISBON))
    meta = read_bytes_metadata(out.getvalue(), "x.jpg")
    assert meta.place is not None and meta.place.city == "Lisbon"


def test_in_semantic_mode_a_preferred_place_stays_in_the_words(client: TestClient) -> None:
    body = post(client, query="green thing in Florence", mode="semantic")
    assert body["understood"]["place"] is None and body["understood"]["text"] == "green thing in Florence"
    alone = post(client, query="photos from italy", mode="semantic")  # a place alone still filters
    assert set(sources(alone)) == IN_FLORENCE


def test_an_index_built_before_the_catalog_reads_nothing_and_still_searches(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    build_index(
        FolderSource(make_roll(tmp_path / "roll")),
        tmp_path / "index",
        pipeline,
        BuildConfig(pca_dim=0, workers=0),
        progress=False,
    )
    with sqlite3.connect(live_path(tmp_path / "index") / MANIFEST) as db:
        db.executescript("DROP TABLE metadata; DROP TABLE lexical_words; DROP TABLE lexical_grams;")
    db.close()
    settings = Settings(
        index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", device="cpu", dedup_threshold=0
    )
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as old:
        assert old.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        for query in ("a dog in 2018", "photos from italy"):
            body = post(old, query=query)
            assert body["understood"] is None and body["total"] == len(ROLL)
