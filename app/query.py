"""What a search looks for: a compound query (parts to add, parts to subtract, images to be like).

Query strings (the CLI, `GET /search?q=`, the page) use rclip's arithmetic:

    cat + dog - grass        two directions added, one subtracted
    2:golden retriever + .5:pool    a part may start with a weight, NUMBER:text (default 1)
    - night                  only an exclusion (with like_ids: "like these, but not at night")
    "rock - paper" + scissors    double quotes keep a part whole

`+` and `-` (also `−` and `–`) are operators only when they stand alone between spaces, so hyphens
inside words stay text: `t-shirt`, `black-and-white photo`, `-5 degrees` and `C++` are plain
one-part queries. A weight needs a letter (or a quote) right after its colon, so `12:30 sunset`
is text too.

Wiring: routes and the CLI call `CompoundQuery.build` (and app/filters.py for the filters); the
service reads each positive part's dates and places (`read`, app/understand.py), encodes the parts
(`SearchService.vector_of`: weighted sum of positive directions minus excluded ones), adds the stored
vectors of `like_ids`, and ranks only the rows the filters let through.

Reading (`read`): each positive part is read on its own; what is left of it is embedded (the part as
typed when nothing is left: "florence", "2018"). The dates read become `taken_after`/`taken_before`
(several parts: the overlap of their periods); the first place read becomes the `place` filter when the
part names nothing else ("photos from Italy"), else a preference (rows taken there gain in the fusion).
The first person the user named that a part names becomes the `person` filter ("Alice at the beach").
A filter the request gives explicitly wins over what was read (the date, the person or the place read
is then not applied, and a note says so). Excluded parts are not read: "- 2019" subtracts the words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from app.errors import BadQuery
from app.filters import BY_NAME, FILTERS, Filters
from app.names import NameMatcher
from app.places import PlaceMatcher
from app.understand import PersonReading, Understood, understand

MAX_PARTS = 16
_OPERATOR = re.compile(r"(?<!\S)([+\-−–])(?!\S)")  # a sign standing alone between blanks (or at an end)
_QUOTED = re.compile(r'"[^"]*"')
_WEIGHT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+):(?=[^\d\s:])")


@dataclass(frozen=True)
class Part:
    """One text of a compound query and its weight."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class CompoundQuery:
    """Texts to look for, texts to move away from, and indexed images to look like."""

    positive: tuple[Part, ...] = ()
    exclude: tuple[Part, ...] = ()
    like_ids: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, query: str | None, exclude: Iterable[str] = (), like_ids: Iterable[str] = ()
    ) -> CompoundQuery:
        """The request's query string parsed, its explicit exclusions and ids added; BadQuery if empty."""
        parsed = parse_query(query) if query and query.strip() else cls()
        extra = tuple(parse_part(text, "exclude") for text in exclude)
        ids = tuple(dict.fromkeys(like_ids))
        built = cls(parsed.positive, parsed.exclude + extra, ids)
        if not built.positive and not built.like_ids:
            raise BadQuery(
                "nothing to search for: give a query text or like_ids (exclusions alone rank nothing)"
            )
        if len(built.positive) + len(built.exclude) > MAX_PARTS:
            raise BadQuery(f"a query has at most {MAX_PARTS} parts")
        return built


def parse_part(text: str, where: str = "query") -> Part:
    """One part: an optional `WEIGHT:` prefix, then text (surrounding double quotes removed)."""
    stripped = text.strip()
    weight = 1.0
    if match := _WEIGHT.match(stripped):
        weight = float(match.group(1))
        stripped = stripped[match.end() :].strip()
        if weight <= 0:
            raise BadQuery(f"{where}: the weight of '{text.strip()}' must be above 0")
    if len(stripped) >= 2 and stripped.startswith('"') and stripped.endswith('"'):
        stripped = stripped[1:-1].strip()
    if not stripped:
        raise BadQuery(f"{where}: '{text.strip()}' has no text")
    return Part(stripped, weight)


def _operators(text: str) -> list[re.Match[str]]:
    """The `+`/`-` operators of a query string, ignoring any inside double quotes."""
    quoted = [match.span() for match in _QUOTED.finditer(text)]
    return [
        match
        for match in _OPERATOR.finditer(text)
        if not any(start <= match.start() < end for start, end in quoted)
    ]


def parse_query(text: str) -> CompoundQuery:
    """`cat + dog - grass` → positive (cat, dog), exclude (grass); see the module docstring."""
    signs: list[str] = ["+"]
    chunks: list[str] = []
    position = 0
    for match in _operators(text):
        chunks.append(text[position : match.start()])
        signs.append("+" if match.group(1) == "+" else "-")
        position = match.end()
    chunks.append(text[position:])
    if not chunks[0].strip() and len(chunks) > 1:  # "- night": the query starts with an operator
        signs, chunks = signs[1:], chunks[1:]
    if len(chunks) > MAX_PARTS:
        raise BadQuery(f"a query has at most {MAX_PARTS} parts, this one has {len(chunks)}")
    for sign, chunk in zip(signs, chunks, strict=True):
        if not chunk.strip():
            raise BadQuery(f"'{sign}' must be followed by a text, as in 'cat + dog - grass'")
    parts = [(sign, parse_part(chunk)) for sign, chunk in zip(signs, chunks, strict=True)]
    return CompoundQuery(
        positive=tuple(part for sign, part in parts if sign == "+"),
        exclude=tuple(part for sign, part in parts if sign == "-"),
    )


@dataclass(frozen=True)
class Reading:
    """A query as read: parts to embed, filters to apply, a place to favour, and what was read."""

    query: CompoundQuery
    filters: Filters
    understood: Understood
    place: str | None = None  # rows taken there gain in the fusion (and say `place` in `matched`)
    preferred: bool = False  # the place is a preference, not a filter
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The response's `understood`: what was read, and notes on what was not applied."""
        found = self.understood.to_json()
        found["notes"] = [*found["notes"], *self.notes]
        return found


def read(
    query: CompoundQuery,
    filters: Filters,
    today: date,
    places: PlaceMatcher | None,
    keep_place: bool = False,
    names: NameMatcher | None = None,
) -> Reading:
    """The query's dates, people and places read from each positive part (see the module docstring).

    `keep_place`: a place that is a preference stays in the words (semantic mode has no fusion)."""
    parts: list[Part] = []
    first: list[date] = []
    last: list[date] = []
    place, spans, notes = None, [], []
    people: dict[str, PersonReading] = {}  # every person named in any part, once
    for part in query.positive:
        got = understand(part.text, today, places if place is None else None, names)
        if keep_place and got.place is not None and got.place.use == "preference":
            got = understand(part.text, today, None, names)
        place = place or got.place
        people |= {person.id: person for person in got.people if person.id not in people}
        first += [got.taken_after] if got.taken_after else []
        last += [got.taken_before] if got.taken_before else []
        spans += list(got.spans)
        notes += list(got.notes)
        parts.append(replace(part, text=got.text or part.text))
    after, before = max(first, default=None), min(last, default=None)
    if after is not None and before is not None and after > before:
        raise BadQuery("the dates read from the query's parts do not overlap; give one date or none")
    texts = [part.text for part in parts]
    left = " + ".join(texts) + "".join(f" - {part.text}" for part in query.exclude)
    understood = Understood(
        query=left, text=left, taken_after=after, taken_before=before, place=place, spans=tuple(spans),
        notes=tuple(notes), people=tuple(people.values()),
    )  # fmt: skip
    given, kept = dict(filters.given), []
    applied: dict[str, object] = {}
    if (after or before) and ("taken_after" in given or "taken_before" in given):
        kept.append("the date read is not applied: the request gives taken_after or taken_before")
    elif after or before:
        applied |= {"taken_after": after, "taken_before": before}
    if place is not None and "place" in given:
        kept.append("the place read is not applied: the request gives a place filter")
        place = None
    elif place is not None and place.use == "filter":
        applied["place"] = place.name
    if people and "person" in given:
        kept.append("the person read is not applied: the request gives a person filter")
    elif people:
        applied["person"] = list(people)  # the photos showing them all
    values = given | {name: BY_NAME[name].parse(value, name) for name, value in applied.items() if value}
    merged = Filters(tuple((spec.name, values[spec.name]) for spec in FILTERS if spec.name in values))
    rebuilt = CompoundQuery(tuple(parts), query.exclude, query.like_ids)
    name = place.name if place is not None else None
    preferred = place is not None and place.use == "preference"
    return Reading(rebuilt, merged, understood, name, preferred, tuple(kept))
