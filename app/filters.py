"""Filters: which images a search may return — each declared once, every interface made from it.

A filter is one entry of `FILTERS`: its name (its key in POST /search's `filters`), its parameter
(GET /search, the form fields of POST /search/image, the page's URL; `--param` on the command line),
its label and help, the type and limits of the value a request gives, how a value is checked
(`parse`: BadQuery naming the field as the user spelled it), its control on the page, and how the
catalog selects the rows that pass (`select`: a vectorised test over the `Column`s kept for every row
of an opened index, each read once by its SQL over the manifest's `metadata` table `m`).
app/api/schemas.py and app/api/routes/search.py make the API's model and parameters from these,
app/cli/search.py its flags, and the page its controls (`GET /search/filters`).

Dates are ISO 8601 and inclusive: `taken_before=2019-12-31` keeps the whole last day. Photo times are
the camera's local time without a zone, so a bound with a zone is refused rather than guessed. Text
filters (folder, camera) ignore case; a folder is itself and everything below it. A place is a whole
name of the city, region or country app/places.py names for the photo's GPS position, derived when
the catalog is read (no rebuild). A person is an id or a name of the people of an index built with
`--faces` (app/people.py); its rows come from the people served (`Columns.person`), not from SQL.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_origin

import numpy as np

from app import formats, places
from app.errors import BadQuery, Conflict

V = TypeVar("V")
Naming = Literal["name", "param", "flag"]  # how a filter is called: POST's filters, GET and forms, CLI
Control = Literal["folder", "date", "choices", "number", "yesno", "text", "person"]  # its control on the page
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# The names and file extensions a user may give for a format (app/formats.py) → its stored name.
FORMAT_OF = {
    alias.lower(): fmt.name
    for fmt in formats.FORMATS
    for alias in (fmt.name, *fmt.also, *(suffix.lstrip(".") for suffix in fmt.suffixes))
}
_LITERAL: Any = Literal  # a Literal of values known at run time
FormatName: Any = _LITERAL[tuple(FORMAT_OF)]  # a format as users name it: a name or a file extension


@dataclass(frozen=True)
class Column:
    """A value the catalog keeps for every row: `sql` reads it from the `metadata` table `m`.

    kind "text": distinct values and each row's code into them (a test runs once per distinct value,
    case-folded; `derive` turns a stored value into the text tested, once per distinct value); "int",
    "time" (datetime64[s], NaT when unknown) and "bool": one array entry per row; "people": nothing
    stored, the rows come from the people of the index (`Columns.person`).
    """

    name: str
    sql: str
    kind: Literal["text", "int", "time", "bool", "people"]
    derive: Callable[[str], str] | None = None  # text: what is tested, made from each distinct stored value

    @property
    def reads(self) -> frozenset[str]:
        """The columns of the `metadata` table its SQL reads."""
        return frozenset(re.findall(r"\bm\.(\w+)", self.sql))


FOLDER = Column("folder", "m.folder", "text")
FORMAT = Column("format", "m.format", "text")
WIDTH = Column("width", "m.width", "int")
HEIGHT = Column("height", "m.height", "int")
TAKEN_AT = Column("taken_at", "m.taken_at", "time")
HAS_GPS = Column("has_gps", "m.latitude IS NOT NULL AND m.longitude IS NOT NULL", "bool")
CAMERA = Column("camera", "trim(coalesce(m.camera_make, '') || ' ' || coalesce(m.camera_model, ''))", "text")


def place_names(position: str) -> str:
    """Every name of the place at a stored "latitude,longitude", folded, each between bars: what the
    `place` filter looks for a whole name in ("|florence|tuscany|italy|it|…|"); '' without a place."""
    latitude, _, longitude = position.partition(",")
    try:
        place = places.place_at(float(latitude), float(longitude))
    except ValueError:
        return ""
    return "" if place is None else _barred_names(place)


@functools.lru_cache(maxsize=4096)
def _barred_names(place: places.Place) -> str:
    """A place's folded names between bars (once per place: a collection holds few)."""
    names = [places.fold(name) for name in (*places.place_words(place), place.country_code)]
    return "|" + "|".join(names) + "|"


# Derived when the catalog is opened (app/places.py): nothing is stored, an older index has places too.
PLACE = Column("place", "m.latitude || ',' || m.longitude", "text", derive=place_names)
# The images a person's faces were found in (app/people.py), asked of the people served.
PERSON = Column("person", "", "people")
PersonRows = Callable[[str], np.ndarray]  # a person's id or name → True for each row showing them
NO_PEOPLE = (
    "filtering by person needs an index whose faces were found: build it with --faces "
    "(imgsearch build --images FOLDER --index-dir INDEX_DIR --faces)"
)


class Columns:
    """What filters test, one entry per vector row: a filter is then a few vectorised comparisons.

    1,000,000 rows cost ≈ 40 MB and a filter over them a few milliseconds, where selecting the rows
    in SQL took hundreds (docs/performance.md). A row the catalog lacks passes no filter, and a
    column an older catalog does not store is a Conflict (409) saying how to upgrade the index.
    """

    def __init__(self, known: np.ndarray, arrays: Mapping[str, np.ndarray], texts: Mapping[str, np.ndarray]):
        self.known = known  # bool: the row has metadata (every row of a catalog built whole)
        self._arrays = dict(arrays)  # per column: one entry per row (codes into `texts` for text columns)
        self._texts = dict(texts)  # text columns: the distinct values, case-folded, as UTF-8 bytes
        self.people: PersonRows | None = None  # set by the catalog of an index with people

    @classmethod
    def load(cls, connection: sqlite3.Connection, table: str = "metadata") -> Columns:
        """Every declared column of a manifest's catalog, read in one pass."""
        count = int(connection.execute("SELECT count(*) FROM images").fetchone()[0])
        stored = {str(row[1]) for row in connection.execute(f"PRAGMA table_info({table})")}
        wanted = [column for column in columns() if column.kind != "people" and column.reads <= stored]
        picked = ", ".join(column.sql for column in wanted)
        sql = f"SELECT i.row, {picked} FROM images i JOIN {table} m ON m.id = i.id"
        found = connection.execute(sql).fetchall()
        rows = np.fromiter((row[0] for row in found), dtype=np.int64, count=len(found))
        known = np.zeros(count, dtype=bool)
        known[rows] = True
        arrays: dict[str, np.ndarray] = {}
        texts: dict[str, np.ndarray] = {}
        for place, column in enumerate(wanted, start=1):
            values = [row[place] for row in found]
            if column.kind == "text":
                texts[column.name], present = _codes(values, column.derive)
                arrays[column.name] = np.zeros(count, dtype=np.int32)
            elif column.kind == "time":
                present = np.asarray(values, dtype="datetime64[s]")  # None → NaT
                arrays[column.name] = np.full(count, np.datetime64("NaT"), dtype="datetime64[s]")
            else:
                dtype = np.int64 if column.kind == "int" else bool
                present = np.fromiter(values, dtype=dtype, count=len(values))
                arrays[column.name] = np.zeros(count, dtype=dtype)
            arrays[column.name][rows] = present
        return cls(known, arrays, texts)

    def values(self, column: Column) -> np.ndarray:
        """A column's value for every row."""
        if column.name not in self._arrays:
            raise Conflict(
                f"filtering by {column.name} needs an index that stores it; upgrade it (vectors are "
                "reused): imgsearch build --images FOLDER --index-dir INDEX_DIR --update"
            )
        return self._arrays[column.name]

    def person(self, key: str) -> np.ndarray:
        """True for each row in which the person with this id or name was found (Conflict without people)."""
        if self.people is None:
            raise Conflict(NO_PEOPLE)
        return self.people(key)

    def matching(self, column: Column, test: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """True for each row whose case-folded text passes `test`: a vectorised test (`np.strings`) of
        the column's distinct values, given as UTF-8 bytes, whose answers go to every row by its code."""
        codes = self.values(column)
        passing: np.ndarray = np.take(test(self._texts[column.name]), codes)
        return passing


def _codes(
    values: Sequence[str | None], derive: Callable[[str], str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (`derive`d when given), case-folded ('' for none), and each value's index."""
    distinct: dict[str | None, int] = {}
    codes = np.fromiter(
        (distinct.setdefault(value, len(distinct)) for value in values), dtype=np.int32, count=len(values)
    )
    derived = (value if value is None or derive is None else derive(value) for value in distinct)
    folded = [(value or "").casefold().encode() for value in derived]  # bytes: fast and compact
    return np.asarray(folded, dtype=bytes), codes


@dataclass(frozen=True, kw_only=True)
class Filter(ABC, Generic[V]):
    """One filter: what it is called, how a request gives it, how it is checked, which rows it keeps."""

    name: str  # its key in POST /search's `filters` (and in `Filters`)
    param: str  # GET /search and POST /search/image parameter, the page's URL; `--param` on the CLI
    label: str  # the page control's label
    help: str
    column: Column  # what `select` tests
    example: object = None  # for the OpenAPI document
    # How a request gives a value: its type and limits (pydantic Field keywords) and the CLI's metavar.
    value_type: ClassVar[Any] = str
    limits: ClassVar[Mapping[str, Any]] = {}
    metavar: ClassVar[str] = "TEXT"
    control: ClassVar[Control] = "text"
    choices: ClassVar[tuple[str, ...]] = ()  # the page's choices

    @property
    def flag(self) -> str:
        """Its command-line flag."""
        return "--" + self.param.replace("_", "-")

    @property
    def repeatable(self) -> bool:
        """Whether a request may give several values (a list: `format=jpg&format=png`)."""
        return get_origin(self.value_type) is list

    def called(self, naming: Naming) -> str:
        """Its name as one interface spells it (what an error message names)."""
        return {"name": self.name, "param": self.param, "flag": self.flag}[naming]

    @abstractmethod
    def parse(self, raw: object, called: str) -> V | None:
        """The checked value of a request's `raw` value; None: no filter. BadQuery names `called`."""

    @abstractmethod
    def select(self, columns: Columns, value: V) -> np.ndarray:
        """True for each row that passes (a vectorised test over every row)."""

    def check(self, parsed: Mapping[str, Any], raw: Mapping[str, object], naming: Naming) -> None:
        """Refuse a value that contradicts another filter's (parsed by name, raw by `naming`)."""


@dataclass(frozen=True, kw_only=True)
class Folder(Filter[str]):
    """A folder of the collection: itself and everything below it, in any case."""

    column: Column = FOLDER
    limits: ClassVar[Mapping[str, Any]] = {"max_length": 4096}
    metavar: ClassVar[str] = "FOLDER"
    control: ClassVar[Control] = "folder"

    def parse(self, raw: object, called: str) -> str | None:
        """The folder "/"-separated, without leading or trailing slashes, case-folded; '..' is refused."""
        if raw is None:
            return None
        parts = [part for part in str(raw).replace("\\", "/").split("/") if part not in ("", ".")]
        if ".." in parts:
            raise BadQuery(f"{called}: '{raw}' must be a folder inside the collection (no '..')")
        return "/".join(parts).casefold() or None

    def select(self, columns: Columns, value: str) -> np.ndarray:
        """Rows in that folder or below it."""
        folder, below = value.encode(), (value + "/").encode()
        return columns.matching(
            self.column, lambda folders: (folders == folder) | np.strings.startswith(folders, below)
        )


@dataclass(frozen=True, kw_only=True)
class Moment(Filter[datetime]):
    """When the picture was taken, a bound included; a bare date stands for its first (or last) instant."""

    column: Column = TAKEN_AT
    bound: Literal["after", "before"]
    not_before: str | None = None  # the filter whose bound this one may not precede
    limits: ClassVar[Mapping[str, Any]] = {"pattern": DAY_PATTERN, "json_schema_extra": {"format": "date"}}
    metavar: ClassVar[str] = "DATE"
    control: ClassVar[Control] = "date"

    def parse(self, raw: object, called: str) -> datetime | None:
        """An ISO date or local date-time (never one with a zone)."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, datetime):
            moment = raw
        elif isinstance(raw, date):
            moment = datetime.combine(raw, time.max if self.bound == "before" else time.min)
        else:
            text = str(raw).strip()
            try:
                if len(text) == 10:
                    return self.parse(date.fromisoformat(text), called)
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise BadQuery(
                    f"{called}: '{raw}' is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)"
                ) from None
        if moment.tzinfo is not None:
            raise BadQuery(
                f"{called}: give a local date or time without a zone (photos keep the camera's local time)"
            )
        return moment

    def select(self, columns: Columns, value: datetime) -> np.ndarray:
        """Rows taken on the right side of the bound (an undated row never passes)."""
        taken, bound = columns.values(self.column), np.datetime64(value, "s")
        return taken >= bound if self.bound == "after" else taken <= bound

    def check(self, parsed: Mapping[str, Any], raw: Mapping[str, object], naming: Naming) -> None:
        """Refuse a range whose start is later than its end."""
        if self.not_before is None or self.name not in parsed or self.not_before not in parsed:
            return
        if parsed[self.not_before] > parsed[self.name]:
            first, last = BY_NAME[self.not_before].called(naming), self.called(naming)
            raise BadQuery(f"{first} ({raw.get(first)}) is later than {last} ({raw.get(last)})")


@dataclass(frozen=True, kw_only=True)
class Formats(Filter[frozenset[str]]):
    """File formats, given as names or extensions (`jpg`, `.PNG`); kept as Pillow's names."""

    column: Column = FORMAT
    value_type: ClassVar[Any] = list[FormatName]
    limits: ClassVar[Mapping[str, Any]] = {"max_length": 32}
    metavar: ClassVar[str] = "FORMAT"
    control: ClassVar[Control] = "choices"
    choices: ClassVar[tuple[str, ...]] = tuple(fmt.name.lower() for fmt in formats.FORMATS)

    def parse(self, raw: object, called: str) -> frozenset[str] | None:
        """Pillow format names of the given names or extensions; BadQuery on an unknown one."""
        if not raw:
            return None
        found: set[str] = set()
        for value in raw if isinstance(raw, list | tuple | set | frozenset) else [raw]:
            key = str(value).strip().lower().lstrip(".")
            if key not in FORMAT_OF:
                raise BadQuery(f"{called}: unknown format '{value}' (known: {', '.join(sorted(FORMAT_OF))})")
            found.add(FORMAT_OF[key])
        return frozenset(found)

    def select(self, columns: Columns, value: frozenset[str]) -> np.ndarray:
        """Rows in one of the formats."""
        wanted = [name.casefold().encode() for name in value]
        return columns.matching(self.column, lambda names: np.isin(names, wanted))


@dataclass(frozen=True, kw_only=True)
class Minimum(Filter[int]):
    """A minimum size in pixels (upright); 0 is no minimum."""

    value_type: ClassVar[Any] = int
    limits: ClassVar[Mapping[str, Any]] = {"ge": 0, "le": 1_000_000}
    metavar: ClassVar[str] = "PIXELS"
    control: ClassVar[Control] = "number"

    def parse(self, raw: object, called: str) -> int | None:
        """A whole number of pixels ≥ 0."""
        if raw is None or raw == 0:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise BadQuery(f"{called} must be a whole number of pixels ≥ 0, got {raw!r}")
        return raw

    def select(self, columns: Columns, value: int) -> np.ndarray:
        """Rows at least that large."""
        return columns.values(self.column) >= value


@dataclass(frozen=True, kw_only=True)
class Flag(Filter[bool]):
    """A yes-or-no property: true keeps the images that have it, false those that do not."""

    value_type: ClassVar[Any] = bool
    control: ClassVar[Control] = "yesno"

    def parse(self, raw: object, called: str) -> bool | None:
        """True, false or nothing."""
        if raw is None or isinstance(raw, bool):
            return raw
        raise BadQuery(f"{called} must be true or false, got {raw!r}")

    def select(self, columns: Columns, value: bool) -> np.ndarray:
        """Rows whose property is `value`."""
        passing: np.ndarray = columns.values(self.column) == value
        return passing


@dataclass(frozen=True, kw_only=True)
class Contains(Filter[str]):
    """Text found in a stored text, in any case (`canon` finds "Canon EOS 80D")."""

    limits: ClassVar[Mapping[str, Any]] = {"max_length": 200}

    def parse(self, raw: object, called: str) -> str | None:
        """The text, blanks collapsed, case-folded; blank is no filter."""
        text = " ".join(str(raw).split()).casefold() if raw is not None else ""
        return text or None

    def select(self, columns: Columns, value: str) -> np.ndarray:
        """Rows whose text contains the value."""
        needle = value.encode()
        return columns.matching(self.column, lambda texts: np.strings.find(texts, needle) >= 0)


@dataclass(frozen=True, kw_only=True)
class Named(Contains):
    """A place's whole name — its city, region or country, or another name of one ("USA", "NYC") — in
    any case, accents optional ("sao paulo" finds "São Paulo"); "nice" does not find Venice."""

    def parse(self, raw: object, called: str) -> str | None:
        """The name folded as app/places.py folds names (no case, accents or punctuation); blank: none."""
        return (places.fold(str(raw)) if raw is not None else "") or None

    def select(self, columns: Columns, value: str) -> np.ndarray:
        """Rows taken in a place that has this name."""
        needle = f"|{value}|".encode()
        return columns.matching(self.column, lambda names: np.strings.find(names, needle) >= 0)


@dataclass(frozen=True, kw_only=True)
class Someone(Filter[tuple[str, ...]]):
    """A person of the index, by id or name in any case: the images their faces were found in. A request
    gives one; the people read from a query's words are several (the images showing them all)."""

    column: Column = PERSON
    control: ClassVar[Control] = "person"  # a list of the index's people (GET /people), by name
    limits: ClassVar[Mapping[str, Any]] = {"max_length": 200}
    metavar: ClassVar[str] = "PERSON"

    def parse(self, raw: object, called: str) -> tuple[str, ...] | None:
        """The ids or names, blanks collapsed (the people served find them in any case); blank: no filter."""
        given = raw if isinstance(raw, list | tuple) else [] if raw is None else [raw]
        keys = tuple(dict.fromkeys(key for value in given if (key := " ".join(str(value).split()))))
        return keys or None

    def select(self, columns: Columns, value: tuple[str, ...]) -> np.ndarray:
        """Rows showing every one of those people."""
        rows = columns.person(value[0])
        for key in value[1:]:
            rows = rows & columns.person(key)
        return rows


FILTERS: tuple[Filter[Any], ...] = (
    Folder(
        name="path_prefix",
        param="folder",
        label="Folder",
        help="a folder of the collection: itself and everything below it, in any case",
        example="2019/paris",
    ),
    Moment(
        name="taken_after",
        param="after",
        label="Taken from",
        help="taken on or after this day: an ISO date (YYYY-MM-DD)",
        bound="after",
        example="2019-01-01",
    ),
    Moment(
        name="taken_before",
        param="before",
        label="to",
        help="taken on or before this day, inclusive: an ISO date (YYYY-MM-DD)",
        bound="before",
        not_before="taken_after",
        example="2019-12-31",
    ),
    Formats(
        name="formats",
        param="format",
        label="Format",
        help="file formats, as names or extensions (repeatable)",
        example=["jpeg", "png"],
    ),
    Minimum(
        name="min_width",
        param="min_width",
        label="Min width",
        help="at least this many pixels wide (upright)",
        column=WIDTH,
    ),
    Minimum(
        name="min_height",
        param="min_height",
        label="Min height",
        help="at least this many pixels high (upright)",
        column=HEIGHT,
    ),
    Flag(
        name="has_gps",
        param="has_gps",
        label="With GPS",
        help="only images with a GPS position (true) or only those without (false)",
        column=HAS_GPS,
    ),
    Contains(
        name="camera",
        param="camera",
        label="Camera",
        help="the camera's make or model contains this text, in any case (canon, eos 80d)",
        column=CAMERA,
        example="canon",
    ),
    Named(
        name="place",
        param="place",
        label="Place",
        help="taken in this city, region or country, named in full, in any case (florence, tuscany, italy); "
        "from the photo's GPS position",
        column=PLACE,
        example="Italy",
    ),
    Someone(
        name="person",
        param="person",
        label="Person",
        help="shows this person: a person's id or name, in any case (GET /people lists them); "
        "needs an index built with --faces",
        example="Alice",
    ),
)
BY_NAME: dict[str, Filter[Any]] = {spec.name: spec for spec in FILTERS}


def columns() -> tuple[Column, ...]:
    """Every column a declared filter reads, once each."""
    return tuple({spec.column.name: spec.column for spec in FILTERS}.values())


@dataclass(frozen=True)
class Filters:
    """Which images a search may return: each given filter's checked value, in `FILTERS` order.

    Hashable, so an opened index keeps the rows of the last filters asked for (app/catalog.py).
    Build it with `parse` (by filter name) or `of` (by any interface's names), which check every value.
    """

    given: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def parse(cls, **values: object) -> Filters:
        """Filters from values by filter name (POST /search's `filters`); BadQuery names the field."""
        return cls.of(values)

    @classmethod
    def of(cls, values: Mapping[str, object], naming: Naming = "name") -> Filters:
        """Filters from values keyed as `naming` says ("param": GET and forms, "flag": the CLI);
        an empty or missing value is no filter. BadQuery names the field as it was given."""
        keyed = {spec.called(naming): spec for spec in FILTERS}
        unknown = sorted(set(values) - set(keyed))
        if unknown:
            raise BadQuery(f"unknown filter '{unknown[0]}' (known: {', '.join(keyed)})")
        parsed: dict[str, Any] = {}
        for key, spec in keyed.items():
            value = spec.parse(values.get(key), key)
            if value is not None:
                parsed[spec.name] = value
        for spec in FILTERS:
            spec.check(parsed, values, naming)
        return cls(tuple((spec.name, parsed[spec.name]) for spec in FILTERS if spec.name in parsed))

    @property
    def is_empty(self) -> bool:
        """True when every image passes."""
        return not self.given

    def get(self, name: str) -> Any:
        """The checked value of one filter (None when not given)."""
        return dict(self.given).get(name)

    def mask(self, columns: Columns) -> np.ndarray:
        """True for each row that passes every filter: the one row test, vectorised over every row."""
        passing = columns.known.copy()
        for name, value in self.given:
            passing &= BY_NAME[name].select(columns, value)
        return passing
