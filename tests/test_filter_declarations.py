"""Every declared filter: its checks, the rows it keeps, and the same results through every interface.

`EXAMPLES` holds one value of each filter in app/filters.py `FILTERS` and the pictures of `PICTURES`
it keeps; each interface (POST /search, GET /search, POST /search/image, `imgsearch search`) must
return exactly those. Adding a filter means declaring it and giving it an example here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import cli
from app.assembly import ServiceFactory
from app.build import BuildConfig, build_index
from app.errors import BadQuery, Conflict
from app.filters import BY_NAME, FILTERS, Columns, Filters
from app.main import create_app
from app.metadata import COLUMNS, ImageMetadata, table_sql
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import dated_exif, png_bytes, service_factory
from tests.fakes import COLOURS
from tests.people_fakes import FaceSpec, FakePeople, serving_people

COLOSSEUM, FOUNTAIN = "2019/Holiday Rome/colosseum.jpg", "2019/Holiday Rome/day 2/fountain.png"
CASTLE, OLD, PHONE = "2019/holiday romania/castle.webp", "scans/old.jpg", "phone/IMG_0001.jpg"
# name → (colour, size, EXIF date or None (then the file's time, 2017-01-01), GPS, camera make and model)
PICTURES: dict[str, tuple[str, tuple[int, int], str | None, bool, tuple[str, str] | None]] = {
    COLOSSEUM: ("red", (300, 200), "2019:07:01 10:00:00", True, ("Canon", "Canon EOS 80D")),
    FOUNTAIN: ("green", (120, 90), None, False, None),
    CASTLE: ("blue", (64, 48), None, False, None),
    OLD: ("green", (90, 400), "2018:02:03 04:05:06", False, ("NIKON CORPORATION", "NIKON D750")),
    PHONE: ("blue", (200, 300), "2020:08:01 16:30:00", True, ("Apple", "iPhone 12")),
}
# A value of each filter, as POST /search's `filters` takes it, and the pictures it keeps.
EXAMPLES: dict[str, tuple[object, set[str]]] = {
    "path_prefix": ("2019/holiday rome", {COLOSSEUM, FOUNTAIN}),  # any case; not "holiday romania"
    "taken_after": ("2019-07-01", {COLOSSEUM, PHONE}),
    "taken_before": ("2018-12-31", {OLD, FOUNTAIN, CASTLE}),
    "formats": (["png", "webp"], {FOUNTAIN, CASTLE}),
    "min_width": (150, {COLOSSEUM, PHONE}),
    "min_height": (250, {OLD, PHONE}),
    "has_gps": (True, {COLOSSEUM, PHONE}),
    "camera": ("eos 80", {COLOSSEUM}),
    "place": ("ile-de-france", {COLOSSEUM, PHONE}),  # Paris's region: any case, accents optional
    "person": ("alice", {COLOSSEUM, OLD}),  # a name in any case (or an id): PEOPLE's faces
}
# The faces the fake people view of PICTURES holds: Alice in two pictures, Bob in one.
PEOPLE: list[FaceSpec] = [
    (COLOSSEUM, (10, 10, 40, 40), 0.9, "p1"),
    (OLD, (5, 5, 30, 30), 0.9, "p1"),
    (PHONE, (20, 20, 50, 50), 0.8, "p2"),
]


def with_people(factory: ServiceFactory) -> ServiceFactory:
    """`factory`, its services serving the people of PEOPLE."""
    return serving_people(factory, lambda ids: FakePeople(ids, PEOPLE, {"p1": "Alice", "p2": "Bob"}))


def make_pictures(root: Path) -> Path:
    """The pictures of PICTURES, with their EXIF dates, positions and cameras."""
    stamp = datetime(2017, 1, 1).timestamp()
    for name, (colour, size, taken, gps, camera) in PICTURES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix]
        extra = {"exif": dated_exif(taken, gps, camera)} if taken else {}
        Image.new("RGB", size, COLOURS[colour]).save(path, format=fmt, **extra)
        os.utime(path, (stamp, stamp))
    return root


@pytest.fixture(scope="module")
def pictures_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of PICTURES."""
    pictures = make_pictures(tmp_path_factory.mktemp("pictures"))
    index_dir = tmp_path_factory.mktemp("pictures-index") / "index"
    build_index(
        FolderSource(pictures), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    return index_dir


@pytest.fixture(scope="module")
def client(
    pictures_index: Path, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A client over the index of PICTURES (every result shown: nothing is folded)."""
    cache = tmp_path_factory.mktemp("cache")
    settings = Settings(index_dir=pictures_index, cache_dir=cache, device="cpu", dedup_threshold=0)
    with TestClient(create_app(settings, factory=with_people(service_factory(models, cache)))) as test_client:
        assert test_client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        yield test_client


def as_params(name: str, value: object) -> list[tuple[str, str]]:
    """A filter's value as query-string or form pairs (a list: repeated; a boolean: true/false)."""
    param = BY_NAME[name].param
    values = value if isinstance(value, list) else [value]
    return [(param, str(item).lower() if isinstance(item, bool) else str(item)) for item in values]


def as_flags(name: str, value: object) -> list[str]:
    """A filter's value as `imgsearch search` options."""
    flag = BY_NAME[name].flag
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [part for item in (value if isinstance(value, list) else [value]) for part in (flag, str(item))]


def found(response: Any) -> set[str]:
    """The sources of a 200 response's results, which must be all the images that passed."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["results"])
    return {result["source"] for result in body["results"]}


def test_every_declared_filter_has_an_example() -> None:
    assert list(EXAMPLES) == [spec.name for spec in FILTERS]


@pytest.mark.parametrize("name", EXAMPLES)
def test_post_search_takes_every_filter(client: TestClient, name: str) -> None:
    value, expected = EXAMPLES[name]
    body = {"query": "thing", "top_k": 100, "mode": "semantic", "filters": {name: value}}
    assert found(client.post("/search", json=body)) == expected


@pytest.mark.parametrize("name", EXAMPLES)
def test_get_search_takes_every_filter(client: TestClient, name: str) -> None:
    value, expected = EXAMPLES[name]
    params: Any = [("q", "thing"), ("top_k", "100"), *as_params(name, value)]
    assert found(client.get("/search", params=params)) == expected


@pytest.mark.parametrize("name", EXAMPLES)
def test_search_by_image_takes_every_filter(client: TestClient, name: str) -> None:
    value, expected = EXAMPLES[name]
    upload = {"image": ("q.png", png_bytes(COLOURS["blue"]), "image/png")}
    form: dict[str, list[str]] = {}
    for param, item in [("top_k", "100"), *as_params(name, value)]:
        form.setdefault(param, []).append(item)
    assert found(client.post("/search/image", files=upload, data=form)) == expected


@pytest.fixture
def command_line(
    pictures_index: Path, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[str]], int]:
    """`imgsearch search` over the index of PICTURES with the fake models (nothing folded)."""
    monkeypatch.setenv("IMGSEARCH_DEDUP_THRESHOLD", "0")
    factory = with_people(service_factory(models, tmp_path / "cache"))
    return lambda argv: cli.main(["search", *argv, "--index-dir", str(pictures_index)], factory=factory)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_command_line_takes_every_filter(
    command_line: Callable[[list[str]], int], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value, expected = EXAMPLES[name]
    assert command_line(["thing", "--top-k", "100", *as_flags(name, value)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.strip().split("  ", 3)[3] for line in lines} == expected


def test_filters_combine_and_folders_ignore_case(client: TestClient) -> None:
    params = {"q": "thing", "folder": "2019/HOLIDAY ROME/", "camera": "CANON", "has_gps": "true"}
    assert found(client.get("/search", params=params)) == {COLOSSEUM}
    body = {"query": "thing", "filters": {"path_prefix": "2019/holiday rome/Day 2"}}
    assert found(client.post("/search", json=body)) == {FOUNTAIN}
    assert found(client.get("/search", params={"q": "thing", "camera": "apple iphone"})) == {PHONE}


@pytest.mark.parametrize(
    ("where", "request_", "message"),
    [
        ("GET", {"after": "2019-13-01"}, "after: '2019-13-01' is not an ISO date"),
        ("GET", {"after": "2020-01-02", "before": "2020-01-01"}, "after (2020-01-02) is later than before"),
        ("GET", {"folder": "../etc"}, "folder: '../etc' must be a folder inside the collection"),
        ("GET", {"camera": "x" * 201}, "camera"),
        ("form", {"before": "2019-02-30"}, "before: '2019-02-30' is not an ISO date"),
        ("form", {"format": "psd"}, "format"),
        ("form", {"min_width": "-1"}, "min_width"),
        ("POST", {"taken_after": "2019-02-30"}, "taken_after: '2019-02-30' is not an ISO date"),
        ("POST", {"camera": 7}, "camera"),
    ],
)
def test_bad_values_are_422_naming_the_field_as_given(
    client: TestClient, where: str, request_: dict[str, Any], message: str
) -> None:
    if where == "GET":
        response = client.get("/search", params={"q": "thing", **request_})
    elif where == "form":
        upload = {"image": ("q.png", png_bytes(COLOURS["blue"]), "image/png")}
        response = client.post("/search/image", files=upload, data=request_)
    else:
        response = client.post("/search", json={"query": "thing", "filters": request_})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_the_page_learns_every_filter(client: TestClient) -> None:
    response = client.get("/search/filters")
    assert response.status_code == 200
    described = response.json()["filters"]
    assert [(item["name"], item["param"], item["flag"]) for item in described] == [
        (spec.name, spec.param, spec.flag) for spec in FILTERS
    ]
    camera = next(item for item in described if item["name"] == "camera")
    assert camera["control"] == "text" and camera["label"] == "Camera" and camera["help"]
    assert next(item for item in described if item["name"] == "formats")["repeatable"] is True
    person = next(item for item in described if item["name"] == "person")
    assert (person["control"], person["repeatable"]) == ("person", False)  # the page's list of people


# -- the row test, over the columns a catalog keeps ------------------------------------------------

IMAGES = {
    "root": ImageMetadata("", "a.jpg", "JPEG", 4000, 3000, datetime(2019, 1, 1, 0, 0, 0), "exif_original"),
    "paris": ImageMetadata(
        "2019/Paris",
        "b.png",
        "PNG",
        800,
        600,
        datetime(2019, 12, 31, 23, 59, 59),
        "exif",
        camera_make="Canon",
        camera_model="Canon EOS 80D",
        latitude=48.8,
        longitude=2.3,
    ),
    "paris-deep": ImageMetadata(
        "2019/Paris/day2", "c.webp", "WEBP", 300, 300, datetime(2020, 1, 1), "mtime", camera_model="EOS 5D"
    ),
    "parisian": ImageMetadata("2019/parisian", "d.gif", "GIF", 50, 50, datetime(2018, 6, 1), "mtime"),
    "undated": ImageMetadata("scans", "e.tif", "TIFF", 2000, 100, camera_make="NIKON CORPORATION"),
}


def catalog_of(stored: dict[str, ImageMetadata | None]) -> sqlite3.Connection:
    """An in-memory manifest whose row i is the i-th image (None: a row the catalog lacks)."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE images (id TEXT, row INTEGER)")
    connection.execute(table_sql())
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    for row, (key, meta) in enumerate(stored.items()):
        connection.execute("INSERT INTO images VALUES (?, ?)", (key, row))
        if meta is not None:
            connection.execute(f"INSERT INTO metadata VALUES ({marks})", (key, *meta.to_row()))
    return connection


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, set(IMAGES)),
        ({"path_prefix": "2019/paris"}, {"paris", "paris-deep"}),
        ({"path_prefix": "/2019/PARIS/"}, {"paris", "paris-deep"}),
        ({"path_prefix": "2019/paris/DAY2"}, {"paris-deep"}),
        ({"path_prefix": "2019"}, {"paris", "paris-deep", "parisian"}),
        ({"taken_after": "2019-01-01", "taken_before": "2019-12-31"}, {"root", "paris"}),  # inclusive
        ({"taken_after": "2020-01-01"}, {"paris-deep"}),
        ({"taken_before": date(2018, 12, 31)}, {"parisian"}),
        ({"taken_after": "2019-12-31T23:59:59"}, {"paris", "paris-deep"}),
        ({"formats": ["jpg", ".PNG"]}, {"root", "paris"}),
        ({"formats": ["tif"]}, {"undated"}),
        ({"min_width": 1000}, {"root", "undated"}),
        ({"min_width": 1000, "min_height": 1000}, {"root"}),
        ({"has_gps": True}, {"paris"}),
        ({"has_gps": False}, set(IMAGES) - {"paris"}),
        ({"path_prefix": "2019", "has_gps": False, "formats": ["webp", "gif"]}, {"paris-deep", "parisian"}),
        ({"camera": "canon"}, {"paris"}),  # the make
        ({"camera": "EOS"}, {"paris", "paris-deep"}),  # the model, in any case
        ({"camera": "eos 80"}, {"paris"}),
        ({"camera": "canon canon eos"}, {"paris"}),  # make and model read as one text
        ({"camera": "nikon"}, {"undated"}),
        ({"camera": "  "}, set(IMAGES)),  # blank: no filter
    ],
)
def test_each_filter_keeps_the_right_rows(given: dict[str, object], expected: set[str]) -> None:
    columns = Columns.load(catalog_of(dict(IMAGES)))
    mask = Filters.parse(**given).mask(columns)
    assert {key for key, passes in zip(IMAGES, mask, strict=True) if passes} == expected


def test_a_row_without_metadata_passes_no_filter() -> None:
    columns = Columns.load(catalog_of({"root": IMAGES["root"], "lost": None}))
    assert Filters.parse(has_gps=False).mask(columns).tolist() == [True, False]
    assert Filters.parse(min_width=1).mask(columns).tolist() == [True, False]
    assert Filters.parse(camera="").mask(columns).tolist() == [True, False]  # no filter: the known rows


def test_empty_values_are_no_filter() -> None:
    parsed = Filters.parse(path_prefix="", taken_after="", formats=[], min_width=0, camera=" ")
    assert parsed.is_empty
    assert not Filters.parse(has_gps=False).is_empty


def test_equal_filters_are_one_selection() -> None:
    assert Filters.parse(path_prefix="2019/Paris/", camera="Canon") == Filters.parse(
        camera=" canon ", path_prefix="2019/paris"
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"taken_after": "last tuesday"}, "taken_after: 'last tuesday' is not an ISO date"),
        ({"taken_before": "2019-02-30"}, "taken_before: '2019-02-30' is not an ISO date"),
        ({"taken_after": "2020-01-01", "taken_before": "2019-12-31"}, "later than"),
        ({"taken_after": "2019-06-01T12:00:00+02:00"}, "without a zone"),
        ({"formats": ["jpeg", "psd"]}, "unknown format 'psd'"),
        ({"min_width": -5}, "min_width"),
        ({"has_gps": "maybe"}, "has_gps must be true or false"),
        ({"path_prefix": "../etc"}, "inside the collection"),
        ({"colour": "red"}, "unknown filter 'colour'"),
    ],
)
def test_bad_filters_are_refused_with_a_message(given: dict[str, object], message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        Filters.parse(**given)


def test_messages_name_the_field_as_each_interface_spells_it() -> None:
    for naming, key in (("name", "taken_after"), ("param", "after"), ("flag", "--after")):
        with pytest.raises(BadQuery, match=f"^{key}: 'soon' is not an ISO date"):
            Filters.of({key: "soon"}, naming=naming)  # type: ignore[arg-type]
    with pytest.raises(BadQuery, match=r"^--after \(2020-02-02\) is later than --before \(2020-02-01\)"):
        Filters.of({"--after": "2020-02-02", "--before": "2020-02-01"}, naming="flag")


def test_the_person_filter_keeps_the_rows_the_people_served_name() -> None:
    columns = Columns.load(catalog_of(dict(IMAGES)))
    with pytest.raises(Conflict, match="filtering by person needs an index whose faces were found"):
        Filters.parse(person="alice").mask(columns)  # an index built without --faces
    asked: list[str] = []

    def alice_first(key: str) -> np.ndarray:
        asked.append(key)
        return np.asarray([key == "Alice"] * 2 + [False] * 3)

    columns.people = alice_first
    assert Filters.parse(person="  Alice ").mask(columns).tolist() == [True, True, False, False, False]
    assert asked == ["Alice"] and Filters.parse(person=" ").is_empty


def test_a_column_an_older_catalog_lacks_is_a_409_for_its_filter_alone() -> None:
    connection = catalog_of({"paris": IMAGES["paris"]})
    connection.executescript("ALTER TABLE metadata DROP COLUMN camera_make;")
    columns = Columns.load(connection)
    assert Filters.parse(path_prefix="2019").mask(columns).tolist() == [True]
    with pytest.raises(Conflict, match=r"filtering by camera needs an index that stores it.*--update"):
        Filters.parse(camera="canon").mask(columns)
