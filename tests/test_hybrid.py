"""Hybrid ranking and compound queries: names rise, opaque names change nothing, exclude and like_ids."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.assembly import service_over
from app.build import BuildConfig, build_index
from app.errors import BadQuery, Conflict, ImageNotFound
from app.filters import Filters
from app.index import MANIFEST, Index, live_path
from app.options import Mode
from app.pipeline import Pipeline
from app.query import CompoundQuery
from app.service import Found, SearchRequest, SearchService
from app.sources import FolderSource
from tests.conftest import make_collection, png_bytes
from tests.fakes import COLOURS

CONFIG = BuildConfig(pca_dim=0, workers=0)
QUERIES = ["red thing", "green", "a blue thing", "thing", "eiffel tower", "beach", "a red car"]
# A mixed collection for "a red car" (the fake image model sees colours): the car photo has a camera's
# name, and the named pictures are not red.
MIXED = {
    "IMG_0001.jpg": "red",  # the car, unnamed: its look matches the query
    "IMG_0002.jpg": "blue",
    "fruit/red-apple.jpg": "green",
    "signs/stoplight-red.png": "green",
    "red-car.jpg": "blue",  # named after the query
}


def served(source: FolderSource, index_dir: Path, pipeline: Pipeline) -> Iterator[SearchService]:
    """A service over a new index of `source` in `index_dir`, closed after its tests."""
    build_index(source, index_dir, pipeline, CONFIG, progress=False)
    opened = service_over(Index(index_dir), pipeline.models, None)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photo collection of tests/conftest.py."""
    return make_collection(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def service(
    photos: Path, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SearchService]:
    """A service over the collection, file names and folders as their owner wrote them."""
    yield from served(FolderSource(photos), tmp_path_factory.mktemp("named") / "index", pipeline)


@pytest.fixture(scope="module")
def opaque(
    photos: Path, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SearchService]:
    """A service over the same pictures under opaque names in one folder."""
    folder = tmp_path_factory.mktemp("opaque")
    for i, path in enumerate(sorted(p for p in photos.rglob("*") if p.is_file())):
        shutil.copyfile(path, folder / f"{(i + 7) * 7919:06x}{path.suffix}")
    yield from served(FolderSource(folder), tmp_path_factory.mktemp("opaque-index") / "index", pipeline)


@pytest.fixture(scope="module")
def mixed(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchService]:
    """A service over MIXED: camera names beside files named after what they show."""
    folder = tmp_path_factory.mktemp("mixed")
    for i, (name, colour) in enumerate(MIXED.items()):  # sizes differ: no two files are byte-identical
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(
            png_bytes(COLOURS[colour], (64 + i, 48), "JPEG" if name.endswith("jpg") else "PNG")
        )
    yield from served(FolderSource(folder), tmp_path_factory.mktemp("mixed-index") / "index", pipeline)


def run(
    service: SearchService, query: str | None, mode: Mode = "hybrid", top_k: int = 10, **extra: object
) -> Found:
    """One search with a parsed query."""
    compound = CompoundQuery.build(
        query,
        exclude=extra.pop("exclude", ()),  # type: ignore[arg-type]
        like_ids=extra.pop("like_ids", ()),  # type: ignore[arg-type]
    )
    filters = Filters.parse(**extra)
    return service.search(SearchRequest(compound, filters, mode, top_k))


def sources(found: Found) -> list[str]:
    """The results' relative paths, best first."""
    return [hit.record.source for hit in found.hits]


@pytest.mark.parametrize("query", QUERIES)
def test_hybrid_over_opaque_names_ranks_exactly_as_semantic(opaque: SearchService, query: str) -> None:
    hybrid, semantic = run(opaque, query), run(opaque, query, "semantic")
    assert [(hit.record.id, hit.score) for hit in hybrid.hits] == [
        (hit.record.id, hit.score) for hit in semantic.hits
    ]
    # The vector ranking itself, on the 0–1 scale: (cosine − the last one) / (the best − the last).
    raw = opaque.search_text(query, opaque.count)
    best, last = raw[0].score, raw[-1].score
    assert [hit.record.id for hit in semantic.hits] == [hit.record.id for hit in raw[:10]]
    scaled = [(hit.score - last) / (best - last) if best > last else 1.0 for hit in raw[:10]]
    assert [hit.score for hit in semantic.hits] == pytest.approx(scaled, abs=1e-6)
    assert all(hit.matched == ["semantic"] for hit in hybrid.hits)


def test_a_name_match_rises_to_the_top(service: SearchService) -> None:
    semantic = sources(run(service, "eiffel tower", "semantic"))
    assert semantic[0] != "paris/eiffel-tower.jpg"  # the pixels alone do not know the tower
    hybrid = run(service, "eiffel tower")
    assert sources(hybrid)[0] == "paris/eiffel-tower.jpg"
    assert hybrid.hits[0].matched == ["semantic", "name"]
    assert sorted(sources(hybrid)) == sorted(semantic)  # fused, not cut: the same images, reordered
    lexical = run(service, "eiffel tower", "lexical")
    assert sources(lexical) == ["paris/eiffel-tower.jpg"] and lexical.hits[0].matched == ["name"]
    beach = run(service, "beach", "lexical")
    assert set(sources(beach)) == {"2020/beach/dog_on_beach.jpg", "2020/beach/sunset.webp"}


def test_a_photo_named_after_the_query_ranks_first(mixed: SearchService) -> None:
    assert sources(run(mixed, "a red car", "semantic"))[0] == "IMG_0001.jpg"  # its pixels say red
    hybrid = run(mixed, "a red car")
    assert sources(hybrid)[0] == "red-car.jpg"
    assert hybrid.hits[0].matched == ["semantic", "name"]


def test_a_partial_name_match_does_not_outrank_a_matching_look(mixed: SearchService) -> None:
    hybrid = run(mixed, "a red car")
    order = sources(hybrid)
    partial = [order.index("fruit/red-apple.jpg"), order.index("signs/stoplight-red.png")]
    assert order.index("IMG_0001.jpg") < min(partial)  # "red" alone is one of the query's two words
    # yet the name still counts for something: above every other picture that matched no word
    unmatched = [i for i, hit in enumerate(hybrid.hits) if hit.matched == ["semantic"]]
    assert all(max(partial) < i for i in unmatched if order[i] != "IMG_0001.jpg")
    # IMG_0002.jpg looks exactly like red-car.jpg to the fakes (both blue): it borrows "red car"
    assert "similar_named" in hybrid.hits[order.index("IMG_0002.jpg")].matched
    assert "name" in hybrid.hits[order.index("fruit/red-apple.jpg")].matched


def test_results_carry_folder_and_date(service: SearchService) -> None:
    hit = next(hit for hit in run(service, "eiffel").hits if hit.record.source == "paris/eiffel-tower.jpg")
    assert hit.folder == "paris" and hit.metadata is not None
    assert hit.metadata.taken_at is not None and hit.metadata.taken_at.isoformat() == "2019-07-14T10:00:00"


def test_filters_apply_in_every_mode(service: SearchService) -> None:
    modes: tuple[Mode, ...] = ("hybrid", "semantic", "lexical")
    for mode in modes:
        found = run(
            service,
            "beach dog",
            mode,
            path_prefix="2020",
            taken_after="2020-08-01",
            taken_before="2020-08-01",
        )
        assert sources(found) == ["2020/beach/dog_on_beach.jpg"]
    everything = run(service, "thing", taken_after="2019-01-01", taken_before="2020-12-31")
    assert everything.total == 4  # 2018 (a8f3c2.jpg) and 2021 (louvre.png) are out
    assert set(sources(everything)) == {
        "paris/eiffel-tower.jpg",
        "2020/beach/dog_on_beach.jpg",
        "2020/beach/sunset.webp",
        "2020/red-car.png",
    }


def test_exclude_lowers_the_excluded_concept(service: SearchService) -> None:
    reds = {"2020/beach/sunset.webp", "2020/red-car.png"}
    plain = run(service, "thing", "semantic")
    minus = run(service, "thing", "semantic", exclude=["red thing"])
    place = {name: i for i, name in enumerate(sources(plain))}
    moved = {name: i for i, name in enumerate(sources(minus))}
    assert all(moved[name] >= len(sources(minus)) - len(reds) for name in reds)
    assert any(moved[name] > place[name] for name in reds)
    arithmetic = run(service, "thing - red thing", "semantic")
    assert sources(arithmetic) == sources(minus)


def test_like_ids_alone_return_the_image_itself_first(service: SearchService) -> None:
    for hit in run(service, "thing").hits:
        like = run(service, None, like_ids=[hit.record.id])
        assert like.hits[0].record.id == hit.record.id
        assert like.hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_like_ids_with_text_mix_the_look_into_the_words(service: SearchService) -> None:
    car = next(hit for hit in run(service, "car").hits if hit.record.source == "2020/red-car.png")
    plain = run(service, "blue thing", "semantic")
    refined = run(service, "blue thing", "semantic", like_ids=[car.record.id])
    order = sources(refined)
    assert set(order[:2]) == {"a8f3c2.jpg", "2020/beach/dog_on_beach.jpg"}  # the words still lead
    greens = [order.index(name) for name in ("paris/eiffel-tower.jpg", "paris/louvre.png")]
    reds = [order.index(name) for name in ("2020/red-car.png", "2020/beach/sunset.webp")]
    assert max(reds) < min(greens)  # and the liked red look comes next

    def score(found: Found) -> float:
        return next(hit.score for hit in found.hits if hit.record.source == "2020/red-car.png")

    assert score(refined) > score(plain) + 0.2


def test_bad_compound_queries_are_refused(service: SearchService) -> None:
    with pytest.raises(ImageNotFound, match="like_ids: no image with id"):
        run(service, None, like_ids=["0123456789abcdef"])
    with pytest.raises(BadQuery, match="nothing to search for"):
        run(service, None, exclude=["red"])
    hit = run(service, "thing").hits[0]
    with pytest.raises(BadQuery, match="mode lexical needs a query text"):
        run(service, None, "lexical", like_ids=[hit.record.id])
    with pytest.raises(BadQuery, match="cancel"):
        run(service, "red thing - red thing", "semantic")


def test_an_old_index_searches_by_meaning_and_refuses_the_rest(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    build_index(FolderSource(photos), tmp_path / "index", pipeline, CONFIG, progress=False)
    with sqlite3.connect(live_path(tmp_path / "index") / MANIFEST) as db:
        db.executescript("DROP TABLE metadata; DROP TABLE lexical_words; DROP TABLE lexical_grams;")
    db.close()
    old = service_over(Index(tmp_path / "index"), pipeline.models, None)
    assert sources(run(old, "eiffel tower")) == sources(run(old, "eiffel tower", "semantic"))
    assert run(old, "thing").hits[0].folder in {"", "paris", "2020", "2020/beach"}
    with pytest.raises(Conflict, match="--update"):
        run(old, "eiffel tower", "lexical")
    with pytest.raises(Conflict, match="--update"):
        run(old, "thing", path_prefix="paris")
    old.close()
