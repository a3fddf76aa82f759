"""Query strings, compound queries and filters: what users type, and clear refusals of the rest."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

import pytest

from app.catalog import FilterColumns
from app.errors import BadQuery
from app.metadata import COLUMNS, ImageMetadata, table_sql
from app.query import CompoundQuery, Filters, Part, parse_query


def texts(parts: tuple[Part, ...]) -> list[str]:
    """The texts of some parts."""
    return [part.text for part in parts]


def test_arithmetic() -> None:
    query = parse_query("cat + dog - grass")
    assert texts(query.positive) == ["cat", "dog"]
    assert texts(query.exclude) == ["grass"]
    assert all(part.weight == 1.0 for part in query.positive + query.exclude)


@pytest.mark.parametrize(
    "text",
    ["t-shirt", "black-and-white photo", "-5 degrees", "C++ book", "a red car", "12:30 sunset", "rock+roll"],
)
def test_hyphens_and_signs_inside_words_stay_one_part(text: str) -> None:
    assert parse_query(text) == CompoundQuery(positive=(Part(text),))


def test_weights() -> None:
    query = parse_query('2:golden retriever + .5:"swimming pool" - 1.5:night')
    assert query.positive == (Part("golden retriever", 2.0), Part("swimming pool", 0.5))
    assert query.exclude == (Part("night", 1.5),)


def test_quotes_keep_a_part_whole_and_unicode_minus_works() -> None:
    query = parse_query('"rock - paper" + scissors − night')
    assert texts(query.positive) == ["rock - paper", "scissors"]
    assert texts(query.exclude) == ["night"]


def test_a_leading_operator_makes_an_exclusion_only_query() -> None:
    assert parse_query("- night") == CompoundQuery(exclude=(Part("night"),))


@pytest.mark.parametrize("text", ["cat +", "cat + - dog", "cat - ", "+ ", "0:cat", '2:""'])
def test_dangling_operators_and_bad_weights_are_refused(text: str) -> None:
    with pytest.raises(BadQuery):
        parse_query(text)


def test_build_merges_explicit_exclusions_and_ids() -> None:
    built = CompoundQuery.build("cat - grass", exclude=["night", "2:rain"], like_ids=["a1", "a1", "b2"])
    assert texts(built.positive) == ["cat"]
    assert built.exclude == (Part("grass"), Part("night"), Part("rain", 2.0))
    assert built.like_ids == ("a1", "b2")
    assert CompoundQuery.build(None, like_ids=["a1"]).like_ids == ("a1",)
    assert CompoundQuery.build(" ", exclude=["night"], like_ids=["a1"]).exclude == (Part("night"),)


@pytest.mark.parametrize(("query", "ids"), [(None, []), ("   ", []), ("- grass", [])])
def test_nothing_to_look_for_is_refused(query: str | None, ids: list[str]) -> None:
    with pytest.raises(BadQuery, match="nothing to search for"):
        CompoundQuery.build(query, like_ids=ids)


def test_too_many_parts_are_refused() -> None:
    with pytest.raises(BadQuery, match="at most"):
        parse_query(" + ".join(["cat"] * 20))


IMAGES = {
    "root": ImageMetadata("", "a.jpg", "JPEG", 4000, 3000, datetime(2019, 1, 1, 0, 0, 0), "exif_original"),
    "paris": ImageMetadata(
        "2019/paris",
        "b.png",
        "PNG",
        800,
        600,
        datetime(2019, 12, 31, 23, 59, 59),
        "exif",
        latitude=48.8,
        longitude=2.3,
    ),
    "paris-deep": ImageMetadata("2019/paris/day2", "c.webp", "WEBP", 300, 300, datetime(2020, 1, 1), "mtime"),
    "parisian": ImageMetadata("2019/parisian", "d.gif", "GIF", 50, 50, datetime(2018, 6, 1), "mtime"),
    "undated": ImageMetadata("scans", "e.tif", "TIFF", 2000, 100),
}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), set(IMAGES)),
        (Filters.parse(path_prefix="2019/paris"), {"paris", "paris-deep"}),
        (Filters.parse(path_prefix="/2019/paris/"), {"paris", "paris-deep"}),
        (Filters.parse(path_prefix="2019"), {"paris", "paris-deep", "parisian"}),
        (Filters.parse(taken_after="2019-01-01", taken_before="2019-12-31"), {"root", "paris"}),  # inclusive
        (Filters.parse(taken_after="2020-01-01"), {"paris-deep"}),
        (Filters.parse(taken_before=date(2018, 12, 31)), {"parisian"}),
        (Filters.parse(taken_after="2019-12-31T23:59:59"), {"paris", "paris-deep"}),
        (Filters.parse(formats=["jpg", ".PNG"]), {"root", "paris"}),
        (Filters.parse(formats=["tif"]), {"undated"}),
        (Filters.parse(min_width=1000), {"root", "undated"}),
        (Filters.parse(min_width=1000, min_height=1000), {"root"}),
        (Filters.parse(has_gps=True), {"paris"}),
        (Filters.parse(has_gps=False), set(IMAGES) - {"paris"}),
        (
            Filters.parse(path_prefix="2019", has_gps=False, formats=["webp", "gif"]),
            {"paris-deep", "parisian"},
        ),
    ],
)
def test_filters_in_python_and_over_the_columns_select_the_same_images(
    filters: Filters, expected: set[str]
) -> None:
    assert {key for key, meta in IMAGES.items() if filters.matches(meta)} == expected
    keys = list(IMAGES)
    mask = FilterColumns.of([IMAGES[key] for key in keys]).mask(filters)
    assert {key for key, passes in zip(keys, mask, strict=True) if passes} == expected


def test_a_row_without_metadata_passes_no_filter() -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE images (id TEXT, row INTEGER)")
    connection.execute(table_sql())
    connection.executemany("INSERT INTO images VALUES (?, ?)", [("root", 0), ("lost", 1)])
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    connection.execute(f"INSERT INTO metadata VALUES ({marks})", ("root", *IMAGES["root"].to_row()))
    columns = FilterColumns.load(connection)
    assert columns.mask(Filters.parse(has_gps=False)).tolist() == [True, False]
    assert columns.mask(Filters.parse(min_width=1)).tolist() == [True, False]


def test_empty_values_are_no_filter() -> None:
    parsed = Filters.parse(path_prefix="", taken_after="", formats=[], min_width=0)
    assert parsed.is_empty
    assert not Filters.parse(has_gps=False).is_empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"taken_after": "last tuesday"}, "taken_after: 'last tuesday' is not an ISO date"),
        ({"taken_before": "2019-02-30"}, "taken_before: '2019-02-30' is not an ISO date"),
        ({"taken_after": "2020-01-01", "taken_before": "2019-12-31"}, "later than"),
        ({"taken_after": "2019-06-01T12:00:00+02:00"}, "without a zone"),
        ({"formats": ["jpeg", "heic"]}, "unknown format 'heic'"),
        ({"min_width": -5}, "min_width"),
        ({"path_prefix": "../etc"}, "inside the collection"),
    ],
)
def test_bad_filters_are_refused_with_a_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        Filters.parse(**kwargs)  # type: ignore[arg-type]
