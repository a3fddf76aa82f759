"""Places from GPS (app/places.py) on a dev set of real positions: is the city the one a person names?

The positions are in bench/data/places_dev.tsv: landmarks and quarters of neighbourhood-heavy
centres, suburbs and towns next to a large city, and points far from any place (open sea, desert).
A position is read right when the city is one of those expected (a person may say "Brooklyn" or
"New York City") in the right country; a point far from any place must get no city (the country
alone, or nothing). `wrong_city` counts the cities named that a person would not name — the error
that matters most.

    .venv/bin/python -m bench.places            # prints each miss, then a RESULT line
    .venv/bin/python -m bench.places --nearest  # the baseline: the nearest GeoNames point within 25 km
    .venv/bin/python -m bench.places --batch 20000  # what naming an index's places costs when it opens
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.places import MAX_CITY_KM, Place, fold, gazetteer, place_of, places_at


@dataclass(frozen=True)
class Position:
    """One dev position and the reading expected of it."""

    kind: str  # centre (of a neighbourhood-heavy city), town (beside a large city), far (from any place)
    label: str
    latitude: float
    longitude: float
    cities: tuple[str, ...]  # any of these is right; () = no city may be named
    country_code: str | None  # None: far from every country (open sea)


DEV_FILE = Path(__file__).parent / "data" / "places_dev.tsv"


def dev_set(path: Path = DEV_FILE) -> tuple[Position, ...]:
    """The dev positions: kind (centre, town, far), label, position, acceptable cities ('|'), country."""
    return tuple(
        Position(
            row["kind"],
            row["label"],
            float(row["latitude"]),
            float(row["longitude"]),
            tuple(filter(None, row["cities"].split("|"))),
            row["country_code"] or None,
        )
        for row in tsv_rows(path)
    )


def tsv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a dev set written as tab-separated values with a header line."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def correct(position: Position, place: Place | None) -> bool:
    """Whether a reading is the one a person would give (see the module docstring)."""
    if not position.cities:
        no_city = place is None or place.city is None
        return no_city and (place is None or position.country_code in (None, place.country_code))
    if place is None or place.city is None or place.country_code != position.country_code:
        return False
    return fold(place.city) in {fold(city) for city in position.cities}


def wrong_city(position: Position, place: Place | None) -> bool:
    """A city was named, and not one a person would name."""
    return place is not None and place.city is not None and not correct(position, place)


def nearest(latitude: float, longitude: float) -> Place | None:
    """The baseline: the nearest point within MAX_CITY_KM, as immich names a place."""
    g = gazetteer()
    points, km = g.near(latitude, longitude)
    if not len(points) or km.min() > MAX_CITY_KM:
        return None
    point = int(points[int(np.argmin(km))])
    code = str(g.codes[point])
    return Place(g.names[point], g.regions[point], g.countries.get(code, code), code)


def batch_cost(count: int) -> None:
    """Naming `count` distinct positions (photos around 40 European towns, ~3 km apart) as the catalog
    does when an index opens (`places_at`: together, rounded), against one lookup at a time."""
    rng = np.random.default_rng(1)
    centres = np.c_[rng.uniform(36, 55, 40), rng.uniform(-9, 25, 40)]
    positions = centres[rng.integers(0, 40, count)] + rng.normal(0, 0.03, (count, 2))
    start = time.perf_counter()
    gazetteer()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    together = places_at([(float(lat), float(lon)) for lat, lon in positions])
    batch_ms = (time.perf_counter() - start) / count * 1000
    sample = positions[: min(count, 2000)]
    start = time.perf_counter()
    alone = [place_of(round(float(lat), 3), round(float(lon), 3)) for lat, lon in sample]
    single_ms = (time.perf_counter() - start) / len(sample) * 1000
    same = sum(a == b for a, b in zip(alone, together, strict=False)) / len(sample)
    print(
        f"RESULT places_batch n={count} load_s={load_s:.2f} ms_per_position={batch_ms:.3f} "
        f"ms_one_by_one={single_ms:.3f} same={same:.3f}"
    )


def main() -> None:
    """Read every dev position; print the misses, the accuracy and the cost."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nearest", action="store_true", help="the baseline: the nearest point within 25 km")
    parser.add_argument("--batch", type=int, default=0, metavar="N", help="time naming N positions together")
    args = parser.parse_args()
    if args.batch:
        batch_cost(args.batch)
        return
    read = nearest if args.nearest else place_of
    start = time.perf_counter()
    gazetteer()
    load_s = time.perf_counter() - start
    dev = dev_set()
    start = time.perf_counter()
    places = [read(position.latitude, position.longitude) for position in dev]
    us = (time.perf_counter() - start) / len(dev) * 1e6
    right = wrong = 0
    for position, place in zip(dev, places, strict=True):
        right += correct(position, place)
        wrong += wrong_city(position, place)
        if not correct(position, place):
            print(f"MISS {position.label}: expected {position.cities or 'no city'} → got {place}")
    accuracy = right / len(dev)
    print(f"{right}/{len(dev)} positions read as a person would; {wrong} wrong cities named")
    print(
        f"RESULT places method={'nearest' if args.nearest else 'weighted'} accuracy={accuracy:.3f} "
        f"n={len(dev)} wrong_city={wrong} "
        f"load_s={load_s:.2f} us_per_lookup={us:.0f}"
    )


if __name__ == "__main__":
    main()
