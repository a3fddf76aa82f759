"""Propagation: unnamed pictures borrow the words of their named look-alikes, and only words that
say what pictures show (app/propagation.py, wired into hybrid search)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import catalog, propagation
from app.assembly import service_over
from app.build import build_index
from app.index import MANIFEST, Index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.propagation import Lending, Lent, Spread, lendable, propagate
from app.service import Hit, SearchService
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS
from tests.test_rank import CONFIG, build, search

# The fake models see colours: each unnamed picture looks like one named one.
GALLERY = {
    "red-car.png": COLOURS["red"],
    "IMG_0042.png": (215, 25, 25),  # looks like red-car.png, named by a camera
    "green-tree.png": COLOURS["green"],
    "blue-boat.png": COLOURS["blue"],
}
# Names that say nothing about what pictures show.
GATED = {
    "2019/IMG_0007.png": COLOURS["red"],
    "IMG_0008.png": (215, 25, 25),  # looks like 2019/IMG_0007.png
    "holiday/IMG_0010.png": COLOURS["green"],  # a folder word over pictures that look nothing alike
    "holiday/IMG_0011.png": COLOURS["blue"],
    "IMG_0012.png": (25, 195, 25),  # looks like holiday/IMG_0010.png
    "blue-boat.png": (30, 30, 215),
    "IMG_0013.png": (25, 25, 210),  # looks like blue-boat.png (and holiday/IMG_0011.png)
}


def gallery(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory, files: dict[str, tuple[int, int, int]]
) -> Path:
    """An index of `files` built with the fake models (sizes differ: no two files are identical)."""
    folder = tmp_path_factory.mktemp("gallery")
    for i, (name, colour) in enumerate(files.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes(colour, (40 + i, 30)))
    return build(folder, tmp_path_factory.mktemp("gallery-index") / "index", pipeline)


@pytest.fixture(scope="module")
def named_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of GALLERY."""
    return gallery(pipeline, tmp_path_factory, GALLERY)


@pytest.fixture(scope="module")
def gated(
    pipeline: Pipeline, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SearchService]:
    """An index of GATED, with its service open."""
    service = service_over(Index(gallery(pipeline, tmp_path_factory, GATED)), models, None)
    yield service
    service.close()


def by_name(hits: list[Hit], name: str) -> Hit:
    """The hit whose file is `name`."""
    return next(hit for hit in hits if hit.record.source == name)


def test_an_unnamed_look_alike_of_a_named_picture_is_found_by_its_words(
    named_index: Path, models: Models
) -> None:
    service = service_over(Index(named_index), models, None)
    try:
        hits = search(service, "red car")
        sources = [hit.record.source for hit in hits]
        assert set(sources[:2]) == {"red-car.png", "IMG_0042.png"}, [
            (h.record.source, h.scores) for h in hits
        ]
        twin, lender = by_name(hits, "IMG_0042.png"), by_name(hits, "red-car.png")
        assert "similar_named" in twin.matched and twin.borrowed_from == [lender.record.id]
        assert twin.scores["propagated"] > 0 and lender.scores["propagated"] == 0.0
        assert "similar_named" not in lender.matched and lender.borrowed_from == []
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= score <= 1.0 for score in scores)
        assert scores[0] == 1.0
        # semantic and lexical modes are unchanged: nothing borrowed there
        for mode in ("semantic", "lexical"):
            assert all("similar_named" not in hit.matched for hit in search(service, "red car", mode))
    finally:
        service.close()


def test_the_api_says_which_named_pictures_lent_their_words(
    named_index: Path, models: Models, tmp_path: Path
) -> None:
    settings = Settings(
        index_dir=named_index, cache_dir=tmp_path / "cache", device="cpu", dedup_threshold=0.0
    )
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        results = client.post("/search", json={"query": "red car"}).json()["results"]
    ids = {result["source"]: result["id"] for result in results}
    twin = next(result for result in results if result["source"] == "IMG_0042.png")
    assert "similar_named" in twin["matched"] and twin["borrowed_from"] == [ids["red-car.png"]]
    assert set(twin["scores"]) == {"semantic", "lexical", "propagated"}
    assert all(0.0 <= result["score"] <= 1.0 for result in results)


def test_folder_years_and_words_spread_over_unrelated_pictures_are_not_lent(gated: SearchService) -> None:
    for query in ("2019", "holiday"):
        assert all("similar_named" not in hit.matched for hit in search(gated, query))
    boat = search(gated, "blue boat")
    twin = by_name(boat, "IMG_0013.png")
    assert "similar_named" in twin.matched and twin.borrowed_from == [
        by_name(boat, "blue-boat.png").record.id
    ]
    lent = gated.catalog.borrowed().lent
    words = {word for borrowed in lent.values() for word in borrowed.words | borrowed.other}
    assert words == {"blue", "boat"}  # not "2019", not "holiday"


def test_a_word_on_pictures_that_look_alike_passes_the_gate_and_one_spread_at_random_does_not() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    words: list[tuple[set[str], set[str]]] = [(set(), set()) for _ in range(40)]
    for row in range(0, 40, 4):  # every fourth picture, whatever it shows
        words[row] = (set(), lendable(["2019/Holiday"]))
    assert lendable(["2019/Holiday", "IMG_0001", "DCIM/Camera Roll"]) == {"holiday"}
    assert propagate(features, words, Spread()) == {}


def _refuse(*_: object) -> dict[int, object]:
    """A propagation that must not run."""
    raise AssertionError("propagation computed when the index opened")


def test_an_index_built_with_propagation_lends_without_computing_it_at_open(
    named_index: Path, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "propagate", _refuse)
    service = service_over(Index(named_index), models, None)
    try:
        hits = search(service, "red car")
        twin = by_name(hits, "IMG_0042.png")
        assert "similar_named" in twin.matched
        assert twin.borrowed_from == [by_name(hits, "red-car.png").record.id]
    finally:
        service.close()


def test_an_index_built_before_builds_stored_propagation_computes_it_at_open(
    named_index: Path, models: Models, tmp_path: Path
) -> None:
    older = tmp_path / "older"
    shutil.copytree(named_index, older, symlinks=True)
    index = Index(older)
    with sqlite3.connect(index.path / MANIFEST) as connection:
        connection.execute(f"DROP TABLE {propagation.LENT_TABLE}")
    sqlite3.connect(index.path / MANIFEST).close()
    service = service_over(index, models, None)
    try:
        twin = by_name(search(service, "red car"), "IMG_0042.png")
        assert "similar_named" in twin.matched
    finally:
        service.close()


def _borrowing(index_dir: Path, models: Models, query: str, name: str) -> tuple[bool, list[str]]:
    """Whether `name` was raised by borrowed words for `query`, and the files it borrowed from."""
    service = service_over(Index(index_dir), models, None)
    try:
        hits = search(service, query)
        hit = by_name(hits, name)
        sources = {other.record.id: other.record.source for other in hits}
        return "similar_named" in hit.matched, [sources.get(lender, lender) for lender in hit.borrowed_from]
    finally:
        service.close()


def test_an_update_that_adds_a_named_look_alike_changes_what_an_unnamed_picture_borrows(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    folder.mkdir()
    (folder / "red-car.png").write_bytes(png_bytes(COLOURS["red"], (40, 30)))
    (folder / "green-tree.png").write_bytes(png_bytes(COLOURS["green"], (41, 30)))
    (folder / "IMG_0050.png").write_bytes(png_bytes((120, 20, 200), (43, 30)))  # purple: far from red
    build(folder, index_dir, pipeline)
    assert _borrowing(index_dir, models, "red car", "IMG_0050.png") == (True, ["red-car.png"])
    (folder / "purple-plum.png").write_bytes(png_bytes((120, 20, 200), (42, 30)))
    build_index(FolderSource(folder), index_dir, pipeline, CONFIG, progress=False, update=True)
    raised, lenders = _borrowing(index_dir, models, "purple plum", "IMG_0050.png")
    assert raised and lenders[0] == "purple-plum.png"  # its twin first (red-car.png lent nothing: too far)
    assert _borrowing(index_dir, models, "red car", "IMG_0050.png")[0] is False


def test_a_large_collection_borrows_through_a_graph_what_the_exact_search_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 16))
    features = (np.repeat(centres, 40, axis=0) + rng.normal(scale=0.15, size=(480, 16))).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    words: list[tuple[set[str], set[str]]] = [(set(), set()) for _ in range(480)]
    for row in range(0, 480, 5):  # a fifth of each look is named after it
        words[row] = ({f"look{chr(97 + row // 40)}"}, set())
    exact = propagate(features, words)
    monkeypatch.setattr(propagation, "EXACT_MAX", 50)  # every neighbour search through the faiss graph
    assert len(exact) > 300 and propagate(features, words) == exact


def test_borrowed_words_match_a_query_word_as_names_do_whole_plural_or_by_prefix() -> None:
    lent = {
        row: Lent(frozenset({word}), frozenset(), 1.0, (9,))
        for row, word in enumerate(["cats", "catalog", "boathouse", "car", "carriage"])
    }
    lending = Lending(lent)
    assert [row for row, _ in lending.parts("a cat")] == [0]  # "cat": the word or its plural, not "catalog"
    assert [row for row, _ in lending.parts("boat")] == [2]  # from 4 letters on, a prefix
    assert sorted(row for row, _ in lending.parts("car")) == [3]
    assert sorted(row for row, _ in lending.parts("carr")) == [4]
