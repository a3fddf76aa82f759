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
service (`SearchService.vector_of`) encodes the parts (weighted sum of positive directions minus
excluded ones), adds the stored vectors of `like_ids`, and ranks only the rows the filters let through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from app.errors import BadQuery

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
