"""Query strings and compound queries: what users type, and clear refusals of the rest."""

from __future__ import annotations

import pytest

from app.errors import BadQuery
from app.query import CompoundQuery, Part, parse_query


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
