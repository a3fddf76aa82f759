"""Query reading (app/understand.py) on a dev set: dates and places to read, look-alikes to leave alone.

The queries are in bench/data/understand_dev.tsv, each with the reading a person means: the text
left to embed, the date range (inclusive) and the place, or no reading at all ("may flowers",
"1984 poster"). A reading counts as correct only when all of them are right. precision = correct
readings / readings made; recall = correct readings / queries that should be read;
`false_readings` counts look-alikes read as a date or place. `today` is fixed (Wednesday 15 October
2025) and the collection holds photos from a few places.

    .venv/bin/python -m bench.understand               # our reader: misses, then a RESULT line
    .venv/bin/python -m bench.understand --dateparser  # also dateparser.search, when installed
    .venv/bin/python -m bench.understand --heldout     # the queries written after the grammar
"""

from __future__ import annotations

import argparse
import importlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from app.places import Place, PlaceMatcher
from app.understand import Understood, understand
from bench.places import tsv_rows

TODAY = date(2025, 10, 15)
PLACES = (
    Place("Florence", "Tuscany", "Italy", "IT"),
    Place("Lisbon", "Lisbon", "Portugal", "PT"),
    Place("Porto", "Porto", "Portugal", "PT"),
    Place("New York City", "New York", "United States", "US"),
    Place("Nice", "Provence-Alpes-Côte d'Azur", "France", "FR"),
    Place("Paris", "Île-de-France", "France", "FR"),
    Place("Kyoto", "Kyoto", "Japan", "JP"),
    Place("Istanbul", "Istanbul", "Turkey", "TR"),
)


@dataclass(frozen=True)
class Case:
    """A dev query and the reading a person means (after/before: ISO dates; all None: no reading)."""

    kind: str  # date, place, date-look-alike, place-look-alike
    query: str
    text: str
    after: str | None = None
    before: str | None = None
    place: str | None = None

    @property
    def reads(self) -> bool:
        """Whether something should be read."""
        return self.text != self.query or self.place is not None or self.after is not None


@dataclass(frozen=True)
class Reading:
    """What a reader made of a query."""

    text: str
    after: date | None
    before: date | None
    place: str | None

    @property
    def reads(self) -> bool:
        """Whether the reader read anything."""
        return self.after is not None or self.before is not None or self.place is not None


OPEN = "open"  # an open side of a range ("since 2020")
DEV_FILE = Path(__file__).parent / "data" / "understand_dev.tsv"
# Written after the grammar was fixed and scored once, never tuned on: an estimate less optimistic.
HELDOUT_FILE = Path(__file__).parent / "data" / "understand_heldout.tsv"
DATE_KINDS = ("date", "date-look-alike")  # the rows dateparser is compared on


def dev_set(path: Path = DEV_FILE) -> tuple[Case, ...]:
    """The dev queries: kind, query, text left ('=': unchanged), taken_after, taken_before, place."""
    return tuple(
        Case(
            row["kind"],
            row["query"],
            row["query"] if row["text"] == "=" else row["text"],
            row["taken_after"] or None,
            row["taken_before"] or None,
            row["place"] or None,
        )
        for row in tsv_rows(path)
    )


def _bound(value: str | None) -> date | None:
    """A dev bound as a date (None when open or absent)."""
    return None if value in (None, OPEN) else date.fromisoformat(value)


def correct(case: Case, reading: Reading) -> bool:
    """Same range, same place, same remaining text (case and spaces aside)."""
    return (
        reading.after == _bound(case.after)
        and reading.before == _bound(case.before)
        and (reading.place or "").casefold() == (case.place or "").casefold()
        and " ".join(reading.text.casefold().split()) == " ".join(case.text.casefold().split())
    )


def ours(matcher: PlaceMatcher) -> Callable[[str], Reading]:
    """app.understand as the service will call it."""

    def read(query: str) -> Reading:
        understood: Understood = understand(query, TODAY, matcher)
        place = understood.place.name if understood.place else None
        return Reading(understood.text, understood.taken_after, understood.taken_before, place)

    return read


def with_dateparser() -> Callable[[str], Reading] | None:
    """dateparser.search.search_dates in English, zone-less, its period widened to a range; None if absent."""
    try:
        search: Any = importlib.import_module("dateparser.search")
        parser: Any = importlib.import_module("dateparser.date")
    except ImportError:
        return None
    settings = {
        "RELATIVE_BASE": datetime(TODAY.year, TODAY.month, TODAY.day, 12),
        "PREFER_DATES_FROM": "past",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "RETURN_TIME_AS_PERIOD": True,
    }
    periods = parser.DateDataParser(languages=["en"], settings=settings)

    def read(query: str) -> Reading:
        found = search.search_dates(query, languages=["en"], settings=settings)
        if not found:
            return Reading(query, None, None, None)
        phrase, moment = found[0]
        period = periods.get_date_data(phrase).period or "day"
        first, last = _widen(moment.date(), period)
        at = query.find(phrase)
        head = re.sub(r"\b(?:in|from|during|on|of|at)\s*$", "", query[:at], flags=re.IGNORECASE)
        text = " ".join((head + " " + query[at + len(phrase) :]).split()).strip(" ,")
        return Reading(text, first, last, None)

    return read


def _widen(day: date, period: str) -> tuple[date, date]:
    """The calendar period dateparser says a date stands for."""
    if period == "year":
        return date(day.year, 1, 1), date(day.year, 12, 31)
    if period == "month":
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return day.replace(day=1), following - timedelta(days=1)
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    return day, day


def score(cases: tuple[Case, ...], read: Callable[[str], Reading], show: bool) -> dict[str, float]:
    """Precision, recall and false readings of a reader over some cases."""
    made = right = false = 0
    for case in cases:
        reading = read(case.query)
        made += reading.reads
        ok = correct(case, reading)
        right += ok and case.reads
        false += reading.reads and not case.reads
        if show and not ok:
            print(f"MISS {case.query!r}: expected {case} → got {reading}")
    should = sum(case.reads for case in cases)
    return {
        "precision": right / made if made else 1.0,
        "recall": right / should if should else 1.0,
        "false_readings": false,
        "n": len(cases),
    }


def main() -> None:
    """Score our reader on the whole dev set (and dateparser on the date rows); time ours per query."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dateparser", action="store_true", help="also score dateparser.search on the date rows"
    )
    parser.add_argument("--heldout", action="store_true", help=f"score {HELDOUT_FILE.name} instead")
    args = parser.parse_args()
    read = ours(PlaceMatcher(PLACES))
    dev = dev_set(HELDOUT_FILE if args.heldout else DEV_FILE)
    figures = score(dev, read, show=True)
    dates = tuple(case for case in dev if case.kind in DATE_KINDS)
    date_figures = score(dates, read, show=False)
    print(f"ours on the date rows ({len(dates)}): {_line(date_figures)}")
    if args.dateparser:
        other = with_dateparser()
        if other is None:
            print("dateparser is not installed: pip install dateparser")
        else:
            start = time.perf_counter()
            print(
                f"dateparser on the date rows ({len(dates)}): {_line(score(dates, other, show=False))}",
                end="",
            )
            print(f" ms_per_query={(time.perf_counter() - start) / len(dates) * 1e3:.1f}")
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        for case in dev:
            read(case.query)
    us = (time.perf_counter() - start) / rounds / len(dev) * 1e6
    print(f"RESULT understand {_line(figures)} us_per_query={us:.0f}")


def _line(figures: dict[str, float]) -> str:
    """precision=… recall=… false_readings=… n=…"""
    return (
        f"precision={figures['precision']:.3f} recall={figures['recall']:.3f} "
        f"false_readings={figures['false_readings']:.0f} n={figures['n']:.0f}"
    )


if __name__ == "__main__":
    main()
