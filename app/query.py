"""What a search asks for: a compound query (parts to add, parts to subtract, images to be like) and filters.

Query strings (the CLI, `GET /search?q=`, the page) use rclip's arithmetic:

    cat + dog - grass        two directions added, one subtracted
    2:golden retriever + .5:pool    a part may start with a weight, NUMBER:text (default 1)
    - night                  only an exclusion (with like_ids: "like these, but not at night")
    "rock - paper" + scissors    double quotes keep a part whole

`+` and `-` (also `−` and `–`) are operators only when they stand alone between spaces, so hyphens
inside words stay text: `t-shirt`, `black-and-white photo`, `-5 degrees` and `C++` are plain
one-part queries. A weight needs a letter (or a quote) right after its colon, so `12:30 sunset`
is text too.

Filters are validated here, once, for every interface; bad values raise `BadQuery` (a 4xx).
Dates are ISO 8601 and inclusive: `taken_before=2019-12-31` keeps the whole last day. Photo times are
the camera's local time without a zone, so a bound with a zone is refused rather than guessed.

Wiring: routes and the CLI call `CompoundQuery.build` and `Filters.parse`; the service
(`SearchService.vector_of`) encodes the parts (weighted sum of positive directions minus excluded
ones), adds the stored vectors of `like_ids`, and ranks only the rows the filters let through
(app/catalog.py `FilterColumns.mask`: the test of `Filters.matches`, vectorised over every row).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from app.errors import BadQuery
from app.metadata import ImageMetadata

MAX_PARTS = 16
_OPERATOR = re.compile(r"(?<!\S)([+\-−–])(?!\S)")  # a sign standing alone between blanks (or at an end)
_QUOTED = re.compile(r'"[^"]*"')
_WEIGHT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+):(?=[^\d\s:])")
# Pillow format name → the names and file extensions a user may give for it.
FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": ("jpeg", "jpg", "jpe", "jfif", "pjpeg", "pjp", "mpo"),
    "PNG": ("png",),
    "WEBP": ("webp",),
    "GIF": ("gif",),
    "BMP": ("bmp",),
    "TIFF": ("tiff", "tif"),
    "PPM": ("ppm", "pgm", "pbm", "pnm"),
}
_FORMAT_OF = {alias: name for name, aliases in FORMATS.items() for alias in aliases}


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


def _moment(value: str | date | None, name: str, end_of_day: bool) -> datetime | None:
    """An ISO date or local date-time; a bare date stands for its first (or last) instant."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.max if end_of_day else time.min)
    else:
        text = value.strip()
        try:
            if len(text) == 10:
                return _moment(date.fromisoformat(text), name, end_of_day)
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise BadQuery(
                f"{name}: '{value}' is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)"
            ) from None
    if moment.tzinfo is not None:
        raise BadQuery(
            f"{name}: give a local date or time without a zone (photos keep the camera's local time)"
        )
    return moment


def _formats(values: Sequence[str] | None) -> frozenset[str] | None:
    """Pillow format names of the user's formats or extensions; BadQuery on an unknown one."""
    if not values:
        return None
    found: set[str] = set()
    for value in values:
        key = value.strip().lower().lstrip(".")
        if key not in _FORMAT_OF:
            known = ", ".join(sorted(_FORMAT_OF))
            raise BadQuery(f"formats: unknown format '{value}' (known: {known})")
        found.add(_FORMAT_OF[key])
    return frozenset(found)


def _folder(value: str | None) -> str | None:
    """A folder relative to the collection's root, "/"-separated, without leading or trailing slashes."""
    if value is None:
        return None
    parts = [part for part in value.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BadQuery(f"path_prefix: '{value}' must be a folder inside the collection (no '..')")
    return "/".join(parts) or None


def _minimum(value: int | None, name: str) -> int | None:
    """A minimum size in pixels; 0 or None is no minimum."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadQuery(f"{name} must be a whole number of pixels ≥ 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Filters:
    """Which images a search may return; build with `Filters.parse`, which validates."""

    path_prefix: str | None = None  # a folder: itself and everything below it
    taken_after: datetime | None = None  # inclusive
    taken_before: datetime | None = None  # inclusive (a bare date: up to its last instant)
    formats: frozenset[str] | None = None  # Pillow names
    min_width: int | None = None
    min_height: int | None = None
    has_gps: bool | None = None

    @classmethod
    def parse(
        cls,
        path_prefix: str | None = None,
        taken_after: str | date | None = None,
        taken_before: str | date | None = None,
        formats: Sequence[str] | None = None,
        min_width: int | None = None,
        min_height: int | None = None,
        has_gps: bool | None = None,
    ) -> Filters:
        """Validated filters from request values; BadQuery names the field that is wrong."""
        after = _moment(taken_after, "taken_after", end_of_day=False)
        before = _moment(taken_before, "taken_before", end_of_day=True)
        if after and before and after > before:
            raise BadQuery(f"taken_after ({taken_after}) is later than taken_before ({taken_before})")
        return cls(
            path_prefix=_folder(path_prefix),
            taken_after=after,
            taken_before=before,
            formats=_formats(formats),
            min_width=_minimum(min_width, "min_width"),
            min_height=_minimum(min_height, "min_height"),
            has_gps=has_gps,
        )

    @property
    def is_empty(self) -> bool:
        """True when every image passes."""
        return self == Filters()

    def matches(self, meta: ImageMetadata) -> bool:
        """Whether one image passes (images without a date never pass a date bound)."""
        prefix = self.path_prefix
        checks = (
            prefix is None or meta.folder == prefix or meta.folder.startswith(prefix + "/"),
            self.taken_after is None or (meta.taken_at is not None and meta.taken_at >= self.taken_after),
            self.taken_before is None or (meta.taken_at is not None and meta.taken_at <= self.taken_before),
            self.formats is None or meta.format in self.formats,
            self.min_width is None or meta.width >= self.min_width,
            self.min_height is None or meta.height >= self.min_height,
            self.has_gps is None or meta.has_gps == self.has_gps,
        )
        return all(checks)
