"""Dates and places typed in a query: read when they are dates or places, left alone when they look alike."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given, settings, strategies as st

from app.names import NameMatcher
from app.places import Place, PlaceMatcher
from app.understand import understand

TODAY = date(2025, 10, 15)  # a Wednesday
PLACES = PlaceMatcher(
    [
        Place("Florence", "Tuscany", "Italy", "IT"),
        Place("Lisbon", "Lisbon", "Portugal", "PT"),
        Place("Nice", "Provence-Alpes-Côte d'Azur", "France", "FR"),
        Place("New York City", "New York", "United States", "US"),
    ]
)


def test_the_issue_s_example_reads_as_the_response_shows_it() -> None:
    understood = understand("a dog in 2018", TODAY, PLACES)
    shown = understood.to_json()
    assert {key: shown[key] for key in ("text", "taken_after", "taken_before", "place")} == {
        "text": "a dog",
        "taken_after": "2018-01-01",
        "taken_before": "2018-12-31",
        "place": None,
    }
    assert shown["read"] == [{"kind": "date", "phrase": "in 2018"}]


@pytest.mark.parametrize(
    ("query", "text", "after", "before"),
    [
        ("beach July 2023", "beach", "2023-07-01", "2023-07-31"),
        ("snow in December 2022", "snow", "2022-12-01", "2022-12-31"),
        ("snow in Feb 2024", "snow", "2024-02-01", "2024-02-29"),
        ("photos from 2019 to 2021", "photos", "2019-01-01", "2021-12-31"),
        ("hiking between 2015 and 2017", "hiking", "2015-01-01", "2017-12-31"),
        ("concerts 2016-2018", "concerts", "2016-01-01", "2018-12-31"),
        ("wedding from March to May 2021", "wedding", "2021-03-01", "2021-05-31"),
        ("from December to February 2021", "", "2020-12-01", "2021-02-28"),
        ("last summer", "", "2025-06-01", "2025-08-31"),
        ("snowman winter 2020", "snowman", "2020-12-01", "2021-02-28"),
        ("yesterday", "", "2025-10-14", "2025-10-14"),
        ("last week", "", "2025-10-06", "2025-10-12"),
        ("trip last weekend", "trip", "2025-10-11", "2025-10-12"),
        ("family dinner last month", "family dinner", "2025-09-01", "2025-09-30"),
        ("this year", "", "2025-01-01", "2025-12-31"),
        ("flowers 3 days ago", "flowers", "2025-10-12", "2025-10-12"),
        ("in the 90s", "", "1990-01-01", "1999-12-31"),
        ("fashion in the 1980s", "fashion", "1980-01-01", "1989-12-31"),
        ("2019-07-14", "", "2019-07-14", "2019-07-14"),
        ("sunset on 14 July 2019", "sunset", "2019-07-14", "2019-07-14"),
        ("fireworks on July 4th, 2021", "fireworks", "2021-07-04", "2021-07-04"),
        ("birthday cake 2017", "birthday cake", "2017-01-01", "2017-12-31"),
        ("cats taken in 2020", "cats", "2020-01-01", "2020-12-31"),
        ("garden since 2020", "garden", "2020-01-01", None),
        ("new house after 2021", "new house", "2022-01-01", None),
        ("old car before 2010", "old car", None, "2009-12-31"),
        ("our dog until 2015", "our dog", None, "2015-12-31"),
        ("beach, July 2023", "beach", "2023-07-01", "2023-07-31"),
    ],
)
def test_dates_are_read_as_whole_periods_and_removed_from_the_text(
    query: str, text: str, after: str | None, before: str | None
) -> None:
    shown = understand(query, TODAY).to_json()
    assert (shown["text"], shown["taken_after"], shown["taken_before"]) == (text, after, before)


@pytest.mark.parametrize(
    "query",
    [
        "may flowers",
        "1984 poster",
        "march of the penguins",
        "the 300 spartans",
        "2001 a space odyssey",
        "april showers",
        "summer dress",
        "new year fireworks",
        "fall leaves",
        "90s fashion",
        "4th of july fireworks",
        "class of 1999",
        "blade runner 2049",
        "christmas in july",
        "route 66",
        "this may hurt",
        "one year anniversary cake",
        "photos 14/07/2019",
        "nice weather",
        "paris hilton",
        "Florence Nightingale statue",
        "a map of Italy",
    ],
)
def test_look_alikes_are_left_alone(query: str) -> None:
    understood = understand(query, TODAY, PLACES)
    assert not understood.read
    assert (understood.text, understood.taken_after, understood.taken_before, understood.place) == (
        query,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("today", "after", "before"),
    [
        (date(2025, 7, 10), "2024-06-01", "2024-08-31"),  # during a summer: the one before
        (date(2025, 9, 1), "2025-06-01", "2025-08-31"),
        (date(2026, 1, 5), "2025-06-01", "2025-08-31"),
    ],
)
def test_last_summer_is_the_latest_summer_over_before_today(today: date, after: str, before: str) -> None:
    understood = understand("beach last summer", today)
    assert (understood.text, understood.taken_after, understood.taken_before) == (
        "beach",
        date.fromisoformat(after),
        date.fromisoformat(before),
    )
    assert understood.notes and "northern" in understood.notes[0]


def test_a_place_alone_becomes_a_filter_and_with_more_a_preference() -> None:
    alone = understand("photos from italy", TODAY, PLACES)
    assert alone.text == "photos" and not alone.has_content
    assert alone.place is not None and (alone.place.name, alone.place.use) == ("Italy", "filter")
    assert alone.to_json()["place"]["use"] == "filter"
    dog = understand("a dog in Florence", TODAY, PLACES)
    assert dog.text == "a dog" and dog.has_content
    assert dog.place is not None and (dog.place.name, dog.place.use) == ("Florence", "preference")
    assert "a dog" in dog.place.why
    assert understand("florence", TODAY, PLACES).place is not None


def test_a_place_and_a_date_together() -> None:
    understood = understand("a dog in Florence in 2018", TODAY, PLACES)
    assert understood.text == "a dog"
    assert (understood.taken_after, understood.taken_before) == (date(2018, 1, 1), date(2018, 12, 31))
    assert understood.place is not None and understood.place.name == "Florence"
    assert [span.phrase for span in understood.spans] == ["in Florence", "in 2018"]


def test_a_place_the_collection_does_not_hold_is_left_in_the_text() -> None:
    assert understand("a dog in Paris", TODAY, PLACES).text == "a dog in Paris"
    assert understand("a dog in Florence", TODAY).place is None  # no places known


def test_a_place_word_is_read_only_as_a_place() -> None:
    assert understand("a nice sunset", TODAY, PLACES).place is None
    nice = understand("sunset in Nice", TODAY, PLACES)
    assert nice.place is not None and nice.text == "sunset"


def test_years_to_come_impossible_days_and_broken_ranges_are_not_dates() -> None:
    assert not understand("from 2021 to 2019", TODAY).read
    assert not understand("in 2019 and 2020", TODAY).read  # not half of it
    assert not understand("in 2031", TODAY).read
    assert not understand("2023-02-30", TODAY).read
    assert not understand("in 1850", TODAY).read


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcjulymarch 0123456789-/ ,inthesfrom")), max_size=40))
def test_any_text_is_read_without_error_and_ranges_are_ordered(text: str) -> None:
    understood = understand(text, TODAY, PLACES)
    if understood.taken_after and understood.taken_before:
        assert understood.taken_after <= understood.taken_before
    assert len(understood.text) <= len(text)


def test_today_may_be_a_moment_its_day_counts() -> None:
    understood = understand("cat yesterday", datetime(2025, 10, 15, 0, 30))
    assert (understood.text, understood.taken_after) == ("cat", date(2025, 10, 14))


NAMES = NameMatcher([("p1", "Alice"), ("p2", "Mary Ann"), ("p3", "Mary"), ("p4", "Florence")])


@pytest.mark.parametrize(
    ("query", "person", "text"),
    [
        ("Alice at the beach", "p1", "at the beach"),
        ("alice at the beach", "p1", "at the beach"),  # in any case
        ("photos of ALICE", "p1", "photos of"),
        ("mary  ann skiing", "p2", "skiing"),  # the longest name first, blanks as typed
        ("Mary skiing", "p3", "skiing"),
        ("malice aforethought", None, "malice aforethought"),  # whole words only
        ("alicea", None, "alicea"),
    ],
)
def test_a_named_person_is_read_from_the_query(query: str, person: str | None, text: str) -> None:
    understood = understand(query, TODAY, PLACES, NAMES)
    assert (understood.person.id if understood.person else None, understood.text) == (person, text)
    if person is not None:
        shown = understood.to_json()
        assert shown["person"]["id"] == person
        assert [item["kind"] for item in shown["read"]] == ["person"]


def test_a_person_and_a_place_and_a_date_are_read_together() -> None:
    understood = understand("Alice in Lisbon in 2019", TODAY, PLACES, NAMES)
    assert understood.person is not None and understood.person.name == "Alice"
    assert understood.place is not None and understood.place.name == "Lisbon"
    assert understood.place.use == "filter"  # nothing but the person and the place: a filter
    assert (understood.taken_after, understood.text) == (date(2019, 1, 1), "")
    assert [span.kind for span in understood.spans] == ["person", "place", "date"]


def test_a_person_named_like_a_place_is_the_person() -> None:
    understood = understand("Florence at the beach", TODAY, PLACES, NAMES)
    assert understood.person is not None and understood.person.id == "p4" and understood.place is None


def test_without_named_people_nothing_is_read_as_a_person() -> None:
    assert understand("Alice at the beach", TODAY, PLACES, NameMatcher([("p1", "  ")])).person is None
    assert understand("Alice at the beach", TODAY, PLACES).person is None


@pytest.mark.parametrize(
    ("query", "people", "text", "chips"),
    [
        ("Alice and Mary Ann at the beach", ["p1", "p2"], "at the beach", 2),
        ("photos of alice, Mary and Florence", ["p1", "p3", "p4"], "photos of", 3),
        ("Alice with alice", ["p1"], "with", 2),  # a person named twice is one person
    ],
)
def test_every_named_person_is_read(query: str, people: list[str], text: str, chips: int) -> None:
    understood = understand(query, TODAY, PLACES, NAMES)
    assert ([person.id for person in understood.people], understood.text) == (people, text)
    shown = understood.to_json()
    assert [person["id"] for person in shown["people"]] == people
    assert shown["person"]["id"] == people[0]  # the first, as when one person is named
    assert [item["kind"] for item in shown["read"]] == ["person"] * chips
