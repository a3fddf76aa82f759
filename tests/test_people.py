"""People through the API (issue 27): the list, face crops, faces of an image, naming and merging behind
the admin key, the `person` filter and names read from queries, over a fake PeopleView."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import cli, people_search
from app.errors import ImageNotFound
from app.index import Index
from app.main import create_app
from app.people_search import crop
from app.pipeline import Models
from app.settings import Settings
from tests.conftest import png_bytes, service_factory
from tests.fakes import COLOURS
from tests.people_fakes import FaceSpec, FakePeople, ids_of, serving_people

ADMIN = {"X-API-Key": "admin-key-for-people"}
RED, GREEN, BLUE = "red.png", "sub/green.jpg", "sub/blue.webp"
FACES: list[FaceSpec] = [
    (RED, (10, 5, 20, 20), 0.99, "p1"),
    (GREEN, (40, 60, 100, 120), 0.98, "p1"),
    (GREEN, (160, 60, 90, 110), 0.9, "p2"),
    (BLUE, (5, 5, 20, 20), 0.7, "p3"),
]
NAMES = {"p1": "Alice", "p2": "Bob", "p3": None}


def people_client(index_dir: Path, models: Models, tmp_path: Path, with_people: bool) -> TestClient:
    """A client over the gallery whose service serves the fake people (or none), with an admin key."""
    settings = Settings(
        index_dir=index_dir, cache_dir=tmp_path / "cache", device="cpu", api_key=ADMIN["X-API-Key"]
    )
    factory = service_factory(models, tmp_path / "cache")
    if with_people:
        factory = serving_people(factory, lambda ids: FakePeople(ids, FACES, NAMES))
    return TestClient(create_app(settings, factory=factory))


@pytest.fixture
def client(index_dir: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client whose index has the people of FACES."""
    with people_client(index_dir, models, tmp_path, True) as test_client:
        assert test_client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def faceless(index_dir: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over an index built without faces."""
    with people_client(index_dir, models, tmp_path, False) as test_client:
        assert test_client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        yield test_client


def ids(client: TestClient) -> dict[str, str]:
    """Each indexed image's source → id."""
    found = client.get("/search", params={"q": "thing", "top_k": 10}).json()["results"]
    return {result["source"]: result["id"] for result in found}


def sources(response: Any) -> set[str]:
    """The sources of a 200 search response's results."""
    assert response.status_code == 200, response.text
    return {result["source"] for result in response.json()["results"]}


def test_people_are_listed_largest_first_with_their_face(client: TestClient) -> None:
    response = client.get("/people")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "people": [
            {"id": "p1", "name": "Alice", "faces": 2, "images": 2, "thumbnail": "/people/p1/thumbnail"},
            {"id": "p2", "name": "Bob", "faces": 1, "images": 1, "thumbnail": "/people/p2/thumbnail"},
            {"id": "p3", "name": None, "faces": 1, "images": 1, "thumbnail": "/people/p3/thumbnail"},
        ],
        "hint": None,
    }


def test_a_thumbnail_is_the_face_cut_from_the_original_with_a_margin(client: TestClient) -> None:
    response = client.get("/people/p2/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    face = Image.open(io.BytesIO(response.content))
    assert face.size == (144, 176)  # Bob's 90 × 110 box and 30 % of it on each side
    red, green, blue = face.convert("RGB").getpixel((72, 88))  # type: ignore[misc]
    assert green > 150 and red < 80 and blue < 80
    assert client.get("/people/nobody/thumbnail").status_code == 404


def test_a_face_at_an_edge_is_cut_at_the_edge_and_boxes_follow_a_reduced_picture(client: TestClient) -> None:
    face = Image.open(io.BytesIO(client.get("/people/p1/thumbnail").content))
    assert face.size == (32, 31)  # Alice's 20 px face, 5 px from red.png's top edge
    half = crop(Image.new("RGB", (150, 200)), (40, 60, 100, 120), (300, 400))  # decoded at half size
    assert Image.open(io.BytesIO(half)).size == (80, 96)
    with pytest.raises(ImageNotFound, match="outside"):
        crop(Image.new("RGB", (60, 40)), (100, 100, 10, 10), (60, 40))


def test_the_faces_of_an_image(client: TestClient) -> None:
    green = ids(client)[GREEN]
    response = client.get(f"/images/{green}/faces")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "faces": [
            {"box": [40, 60, 100, 120], "person": "p1", "score": 0.98},
            {"box": [160, 60, 90, 110], "person": "p2", "score": 0.9},
        ],
        "hint": None,
    }
    missing = client.get("/images/0123456789abcdef/faces")
    assert missing.status_code == 404 and "no image" in missing.json()["detail"]


def test_an_index_without_faces_has_no_people_and_says_why(faceless: TestClient) -> None:
    listed = faceless.get("/people")
    assert listed.status_code == 200 and listed.json()["people"] == []
    assert "--faces" in listed.json()["hint"]
    green = ids(faceless)[GREEN]
    assert faceless.get(f"/images/{green}/faces").json()["faces"] == []
    assert faceless.get("/people/p1/thumbnail").status_code == 404
    renamed = faceless.patch("/people/p1", json={"name": "Alice"}, headers=ADMIN)
    assert renamed.status_code == 404 and "--faces" in renamed.json()["detail"]
    filtered = faceless.get("/search", params={"q": "thing", "person": "alice"})
    assert filtered.status_code == 409 and "--faces" in filtered.json()["detail"]
    assert faceless.get(f"/images/{green}/metadata").json()["people"] == []
    assert sources(faceless.get("/search", params={"q": "Alice at the beach"}))  # read as words


def test_naming_a_person_lasts_and_is_found(client: TestClient) -> None:
    response = client.patch("/people/p3", json={"name": "  Carol  "}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Carol" and response.json()["id"] == "p3"
    assert [person["name"] for person in client.get("/people").json()["people"]] == ["Alice", "Bob", "Carol"]
    assert sources(client.get("/search", params={"q": "thing", "person": "CAROL"})) == {BLUE}
    body = client.get("/search", params={"q": "carol"}).json()
    assert body["understood"]["person"] == {"id": "p3", "name": "Carol"}


def test_merging_folds_a_person_into_another_and_the_filter_follows(client: TestClient) -> None:
    assert sources(client.get("/search", params={"q": "thing", "person": "alice"})) == {RED, GREEN}
    response = client.post("/people/p3/merge", json={"into": "Alice"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": "p1", "name": "Alice", "faces": 3, "images": 3, "thumbnail": "/people/p1/thumbnail"
    }  # fmt: skip
    assert [person["id"] for person in client.get("/people").json()["people"]] == ["p1", "p2"]
    assert sources(client.get("/search", params={"q": "thing", "person": "alice"})) == {RED, GREEN, BLUE}


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (("patch", "/people/nobody", {"name": "Zoe"}), 404, "nobody"),
        (("patch", "/people/p1", {"name": ""}), 422, "name"),
        (("patch", "/people/p1", {"name": "   "}), 422, "name"),
        (("patch", "/people/p1", {"name": "x" * 101}), 422, "name"),
        (("patch", "/people/p1", {"name": 7}), 422, "name"),
        (("patch", "/people/p1", {"nom": "Zoe"}), 422, "nom"),
        (("patch", "/people/p1", None), 422, "body"),
        (("post", "/people/p1/merge", {"into": "p1"}), 422, "itself"),
        (("post", "/people/p1/merge", {"into": "alice"}), 422, "itself"),
        (("post", "/people/p1/merge", {"into": "nobody"}), 404, "nobody"),
        (("post", "/people/nobody/merge", {"into": "p1"}), 404, "nobody"),
        (("post", "/people/p1/merge", {}), 422, "into"),
        (("patch", "/people/" + "x" * 300, {"name": "Zoe"}), 422, "person_id"),
    ],
)
def test_bad_changes_are_clear_4xx(
    client: TestClient, call: tuple[str, str, Any], status: int, message: str
) -> None:
    method, path, body = call
    response = client.request(method.upper(), path, json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert [person["name"] for person in client.get("/people").json()["people"]] == ["Alice", "Bob", None]


def test_naming_and_merging_need_the_admin_key(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "guess"}):
        assert client.patch("/people/p1", json={"name": "Eve"}, headers=headers).status_code == 401
        assert client.post("/people/p2/merge", json={"into": "p1"}, headers=headers).status_code == 401
    assert client.get("/people").json()["people"][0]["name"] == "Alice"


def test_without_an_admin_key_set_changes_are_disabled(faceless: TestClient, index_dir: Path) -> None:
    faceless.app.state.runtime.settings = Settings(index_dir=index_dir, device="cpu")  # type: ignore[attr-defined]
    response = faceless.patch("/people/p1", json={"name": "Eve"}, headers=ADMIN)
    assert response.status_code == 403 and "IMGSEARCH_API_KEY" in response.json()["detail"]


def test_the_person_filter_through_post_get_and_the_image_search(client: TestClient) -> None:
    body = {"query": "thing", "top_k": 10, "filters": {"person": "Bob"}}
    response = client.post("/search", json=body)
    assert sources(response) == {GREEN}
    assert all("person" in result["matched"] for result in response.json()["results"])
    assert sources(client.get("/search", params={"q": "thing", "person": "p1"})) == {RED, GREEN}
    upload = {"image": ("q.png", png_bytes(COLOURS["blue"]), "image/png")}
    assert sources(client.post("/search/image", files=upload, data={"person": "alice"})) == {RED, GREEN}
    unknown = client.get("/search", params={"q": "thing", "person": "Zoe"})
    assert unknown.status_code == 422 and "person: no person" in unknown.json()["detail"]
    assert client.get("/search", params={"q": "thing", "person": "x" * 201}).status_code == 422


def test_the_command_line_filters_by_person(
    index_dir: Path, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = serving_people(service_factory(models, tmp_path), lambda ids: FakePeople(ids, FACES, NAMES))
    argv = ["search", "thing", "--person", "BOB", "--index-dir", str(index_dir)]
    assert cli.main(argv, factory=factory) == 0
    assert GREEN in capsys.readouterr().out
    assert cli.main(["search", "bob on a boat", "--index-dir", str(index_dir)], factory=factory) == 0
    said = capsys.readouterr()
    assert "searching 'on a boat'" in said.err and "person Bob" in said.err
    assert cli.main(["search", "alice and bob", "--index-dir", str(index_dir)], factory=factory) == 0
    said = capsys.readouterr()
    assert "people Alice, Bob" in said.err and GREEN in said.out and RED not in said.out
    assert said.out.count("\n") == 1 and GREEN in said.out
    assert cli.main(["search", "bob in 1990", "--index-dir", str(index_dir)], factory=factory) == 0
    said = capsys.readouterr()
    assert said.out == ""
    assert "hint: the dates and the person Bob read from the query kept no image" in said.err


def test_the_service_serves_the_people_of_the_generation_it_serves(
    index_dir: Path, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Path, Path]] = []

    def open_people(root: Path, generation: Path) -> FakePeople:
        asked.append((root, generation))
        index = Index(root)
        try:
            return FakePeople(ids_of(index), FACES, NAMES)
        finally:
            index.close()

    monkeypatch.setattr(people_search, "open_people", open_people)
    with people_client(index_dir, models, tmp_path, False) as served:
        assert served.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        assert [person["name"] for person in served.get("/people").json()["people"]] == ["Alice", "Bob", None]
        generation = served.get("/readyz").json()["generation"]
    assert asked == [(index_dir, index_dir / "generations" / generation)]


@pytest.mark.parametrize("failure", [OSError("faces.db is unreadable"), sqlite3.DatabaseError("malformed")])
def test_people_that_cannot_be_read_leave_the_rest_of_the_index_served(
    index_dir: Path, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def open_people(root: Path, generation: Path) -> None:
        raise failure

    monkeypatch.setattr(people_search, "open_people", open_people)
    with people_client(index_dir, models, tmp_path, False) as served:
        assert served.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        assert served.get("/people").json()["people"] == []
        assert sources(served.get("/search", params={"q": "thing"}))


def test_a_name_in_the_query_is_read_as_the_person(client: TestClient) -> None:
    response = client.get("/search", params={"q": "alice at the beach", "top_k": 10})
    assert sources(response) == {RED, GREEN}
    body = response.json()
    understood = body["understood"]
    assert understood["person"] == {"id": "p1", "name": "Alice"}
    assert understood["people"] == [{"id": "p1", "name": "Alice"}]
    assert understood["text"] == "at the beach"
    assert {"kind": "person", "phrase": "alice"} in understood["read"]
    assert all("person" in result["matched"] for result in body["results"])


def test_every_name_in_the_query_is_read_images_show_them_all(client: TestClient) -> None:
    body = client.get("/search", params={"q": "Alice and Bob at the beach", "top_k": 10}).json()
    assert {result["source"] for result in body["results"]} == {GREEN}  # the one photo of both
    understood = body["understood"]
    assert understood["people"] == [{"id": "p1", "name": "Alice"}, {"id": "p2", "name": "Bob"}]
    assert understood["person"] == {"id": "p1", "name": "Alice"} and understood["text"] == "at the beach"
    assert [item["phrase"] for item in understood["read"]] == ["Alice", "Bob"]
    parts = client.get("/search", params={"q": "bob + alice", "top_k": 10}).json()  # across parts too
    assert [person["id"] for person in parts["understood"]["people"]] == ["p2", "p1"]
    assert {result["source"] for result in parts["results"]} == {GREEN}


def test_names_are_read_as_whole_words_and_a_given_filter_wins(client: TestClient) -> None:
    body = client.get("/search", params={"q": "malice bobcat"}).json()
    assert body["understood"]["person"] is None and body["understood"]["people"] == []
    assert len(body["results"]) == 3
    given = client.get("/search", params={"q": "Alice on a boat", "person": "bob"}).json()
    assert {result["source"] for result in given["results"]} == {GREEN}
    assert any("person read is not applied" in note for note in given["understood"]["notes"])
    verbatim = client.get("/search", params={"q": "Alice", "understand": "false"}).json()
    assert verbatim["understood"] is None and len(verbatim["results"]) == 3


def test_metadata_lists_the_named_people(client: TestClient) -> None:
    found = ids(client)
    assert client.get(f"/images/{found[GREEN]}/metadata").json()["people"] == [
        {"id": "p1", "name": "Alice"},
        {"id": "p2", "name": "Bob"},
    ]
    assert client.get(f"/images/{found[BLUE]}/metadata").json()["people"] == []  # unnamed: not listed


def test_a_description_names_the_people_a_user_named_only(client: TestClient) -> None:
    found = ids(client)
    green = client.post("/describe", json={"image_id": found[GREEN]}).json()
    assert green["description"].endswith(", with Alice and Bob.")
    assert {"phrase": "Alice", "source": "index"}.items() <= green["evidence"][-2].items()
    blue = client.post("/describe", json={"image_id": found[BLUE]}).json()
    assert " with " not in blue["description"]  # an unnamed face is never guessed a name
