"""Places from GPS positions, offline: the city a person names, never a wrong one; finding places in text."""

from __future__ import annotations

import math

import pytest

from app.places import Place, PlaceMatcher, gazetteer, place_of, place_words

FLORENCE = Place("Florence", "Tuscany", "Italy", "IT")
NEW_YORK = Place("New York City", "New York", "United States", "US")
PARIS_REGION = Place("Saint-Denis", "Île-de-France", "France", "FR")
COLOGNE = Place("Köln", "North Rhine-Westphalia", "Germany", "DE")


@pytest.mark.parametrize(
    ("latitude", "longitude", "city", "region", "country"),
    [
        # The nearest GeoNames points are quarters ("Baixa", "Intendente"; "Seaport"; wards of Tokyo).
        (38.7139, -9.1394, "Lisbon", "Lisbon", "Portugal"),
        (40.7580, -73.9855, "New York City", "New York", "United States"),
        (35.6586, 139.7454, "Tokyo", "Tokyo", "Japan"),
        (43.7731, 11.2560, "Florence", "Tuscany", "Italy"),
        (34.9949, 135.7850, "Kyoto", "Kyoto", "Japan"),
        # A town beside a large city keeps its own name.
        (48.9356, 2.3599, "Saint-Denis", "Île-de-France", "France"),
        (38.6979, -9.4215, "Cascais", "Lisbon", "Portugal"),
        # Country names as people write them, not ISO's formal ones.
        (37.5665, 126.9780, "Seoul", "Seoul", "South Korea"),
        (55.7558, 37.6173, "Moscow", "Moscow", "Russia"),
    ],
)
def test_the_city_a_person_would_name(
    latitude: float, longitude: float, city: str, region: str, country: str
) -> None:
    place = place_of(latitude, longitude)
    assert place is not None
    assert (place.city, place.region, place.country) == (city, region, country)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(40.0, -30.0), (0.0, -140.0), (35.5, 18.0), (-90.0, 0.0)],
    ids=["atlantic", "pacific", "ionian-sea", "south-pole"],
)
def test_open_sea_names_no_place(latitude: float, longitude: float) -> None:
    assert place_of(latitude, longitude) is None


def test_off_the_coast_or_in_the_desert_names_the_country_at_most() -> None:
    off_nazare = place_of(39.60, -9.32)  # 20 km out at sea, west of Nazaré
    assert off_nazare is None or (off_nazare.city is None and off_nazare.country == "Portugal")
    sahara = place_of(20.0, 12.0)
    assert sahara is None or sahara.city is None


@pytest.mark.parametrize(
    ("latitude", "longitude"), [(math.nan, 0.0), (0.0, math.inf), (91.0, 0.0), (0.0, 181.0)]
)
def test_an_invalid_position_is_no_place(latitude: float, longitude: float) -> None:
    assert place_of(latitude, longitude) is None


def test_the_gazetteer_is_loaded_once_per_process() -> None:
    assert gazetteer() is gazetteer()


def test_place_is_stored_and_read_back_as_the_metadata_object() -> None:
    stored = FLORENCE.to_dict()
    assert stored == {
        "city": "Florence",
        "region": "Tuscany",
        "country": "Italy",
        "country_code": "IT",
        "local_city": None,
    }
    assert Place.from_dict(stored) == FLORENCE
    assert FLORENCE.label == "Florence, Tuscany, Italy"
    assert Place(None, None, "Portugal", "PT").label == "Portugal"


def test_place_words_hold_every_name_a_person_searches_by() -> None:
    assert place_words(FLORENCE)[:3] == ("Florence", "Tuscany", "Italy")
    words = place_words(NEW_YORK)
    for name in ("New York City", "NYC", "New York", "United States", "USA", "United States of America"):
        assert name in words
    assert len(words) == len({word.casefold() for word in words})  # each name once


@pytest.mark.parametrize(
    ("text", "name", "phrase"),
    [
        ("florence", "Florence", "florence"),
        ("Italy", "Italy", "Italy"),
        ("photos from italy", "Italy", "italy"),
        ("in New York", "New York", "New York"),
        ("a dog in NYC", "New York City", "NYC"),  # the city's informal name
        ("New York City at night", "New York City", "New York City"),  # the longest name first
        ("beach in the USA", "United States", "USA"),
        ("ILE DE FRANCE at night", "Île-de-France", "ILE DE FRANCE"),
        ("koln cathedral", "Köln", "koln"),
        ("Tuscany hills", "Tuscany", "Tuscany"),
    ],
)
def test_matcher_finds_the_places_a_collection_holds(text: str, name: str, phrase: str) -> None:
    matcher = PlaceMatcher([FLORENCE, NEW_YORK, PARIS_REGION, COLOGNE])
    [mention] = matcher.find(text)
    assert mention.name == name
    assert text[mention.start : mention.end] == phrase


def test_matcher_knows_only_the_collection_s_places() -> None:
    matcher = PlaceMatcher([FLORENCE])
    assert matcher.find("paris in spring") == []
    assert matcher.find("florentine steak") == []  # whole names only
    assert len(PlaceMatcher([])) == 0


def test_a_name_of_both_a_city_and_its_region_is_found_once() -> None:
    lisbon = Place("Lisbon", "Lisbon", "Portugal", "PT")
    [mention] = PlaceMatcher([lisbon]).find("tram in Lisbon")
    assert (mention.name, mention.fields) == ("Lisbon", ("city", "region"))
