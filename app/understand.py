"""Stage: the dates and places typed in a query — "a dog in 2018" → "a dog", taken in 2018.

`understand(text, today, places)` reads at most one date phrase and one place phrase from a query and
returns what is left to embed, the date range (inclusive, whole periods: a year is 1 January to 31
December, a month its first to its last day) and the place, with the spans it removed so that a
page can show each as a chip. It is pure and cheap (a few regular expressions and dictionary look-ups;
`today` is given, never read from the clock) so each part of an `a + b - c` query is read on its own.

A small explicit grammar, chosen over `dateparser.search.search_dates` on the dev set of
bench/understand.py (docs/relevance.md): a month name, a number or a season alone is never a date
("may flowers", "march of the penguins", "1984 poster", "summer dress"). Read are: ISO dates
(2019-07-14, 2019-07), a day, a month or a season with its year ("14 July 2019", "July 2023",
"summer 2019"), a year or a decade after a preposition ("in 2018", "from the 90s", "since 2019") or
ending the query ("beach 2019"), ranges ("from 2019 to 2021", "from March to May 2020",
"2019-2021"), and relative dates ("yesterday", "last week", "last summer", "3 days ago"). Seasons
are the northern hemisphere's meteorological ones (summer = June to August; winter 2019 = December
2019 to February 2020); `notes` says so when one is read.

A place is read only when the collection holds it (a `PlaceMatcher` built from its places) and the
query names it after "in", "from", "at", "near" or "around", or as a capitalised name inside the
query, or as all that is left. `Understood.place.use` is "filter" when nothing but filler words
("photos", "pictures of") remain, else "preference"; `why` says which and why.

A person is read when the query names one the user named (app/names.py: whole words, in any case):
"Alice at the beach" → Alice, and "at the beach" to embed. Every person named is read ("Alice and Bob
at the beach" → both: the photos showing them all). People are read before the place, so "Alice in
Paris" reads both.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from app.names import NameMatcher
from app.places import PlaceMatcher, PlaceMention

PlaceUse = Literal["filter", "preference"]

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # first month, northern
NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
# Words that ask for photos without saying what is in them: "photos from Italy" asks for a place only.
FILLERS = frozenset(
    [
        "photo",
        "photos",
        "picture",
        "pictures",
        "pic",
        "pics",
        "image",
        "images",
        "shot",
        "shots",
        "snap",
        "snaps",
        "show",
        "me",
        "my",
        "our",
        "all",
        "the",
        "a",
        "an",
        "some",
        "any",
        "taken",
        "of",
        "from",
        "in",
        "at",
        "and",
        "find",
        "see",
    ]
)
FIRST_YEAR = 1900  # no earlier year is read as a date

_M = "|".join(sorted(MONTHS, key=len, reverse=True))
_S = "|".join(SEASONS)
_N = r"\d{1,3}|" + "|".join(NUMBERS)
_D = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_ATOM = re.compile(
    rf"""
    (?P<iso>\b(?P<iy>\d{{4}})([-/.])(?P<im>1[0-2]|0?[1-9])(?:\3(?P<id>[12]\d|3[01]|0?[1-9]))?\b(?![-/.]\d))
  | (?P<dmy>\b(?P<dd>{_D})\s+(?:of\s+)?(?P<dm>{_M})\.?,?\s+(?P<dy>\d{{4}})\b)
  | (?P<mdy>\b(?P<mm>{_M})\.?\s+(?P<md>{_D}),?\s+(?P<my>\d{{4}})\b)
  | (?P<monthyear>\b(?P<ym>{_M})\.?,?\s+(?:of\s+)?(?P<yy>\d{{4}})\b)
  | (?P<season>\b(?P<ss>{_S})\s+(?:of\s+)?(?P<sy>\d{{4}})(?:\s*[/-]\s*(?:\d{{4}}|\d\d)\b)?\b)
  | (?P<ago>\b(?P<an>{_N})\s+(?P<au>day|week|month|year)s?\s+ago\b)
  | (?P<span>\b(?:last|past)\s+(?P<pn>{_N})\s+(?P<pu>day|week|month|year)s\b)
  | (?P<rel>\b(?P<rw>last|this|past|previous)\s+(?P<ru>weekend|week|month|year|{_S})\b)
  | (?P<lastmonth>\b(?:last|previous)\s+(?P<lm>{_M})\b)
  | (?P<day>\b(?:the\s+day\s+before\s+yesterday|yesterday|today)\b)
  | (?P<decade>\b(?:the\s+)?(?:(?P<dc>1[89]|20)(?P<dx>\d)0|['’]?(?P<dz>\d)0)['’]?s\b)
  | (?P<year>\b(?P<yr>\d{{4}})\b)
  | (?P<month>\b(?P<mo>{_M})\b)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_CONTEXTUAL = {"year", "decade", "month"}  # atoms that are dates only in context
_LEAD = re.compile(
    r"(?:\b(?:taken|shot)\s+)?\b(?P<word>in|from|during|on|of|at|around|since|after|before|until|till|through"
    r"|between)\s+$",
    re.IGNORECASE,
)
_JOIN = re.compile(r"\s*(?:to|until|till|through|and|-|–|—)\s*", re.IGNORECASE)
_PLACE_LEAD = re.compile(r"\b(?:in|from|at|near|around)\s+(?:the\s+)?$", re.IGNORECASE)
_NOT_A_YEAR_AFTER = frozenset(
    ["of", "the", "no", "number", "route", "room", "apollo", "vol", "volume", "part", "episode"]
)
_DIGIT_NEXT = re.compile(r"[-/.:]\d")
_WORDS = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


@dataclass(frozen=True)
class Period:
    """Inclusive calendar days; None on one side is open."""

    first: date | None
    last: date | None


@dataclass(frozen=True)
class Span:
    """A phrase read from the query, as typed (with its preposition): what a chip shows."""

    kind: Literal["date", "place", "person"]
    start: int
    end: int
    phrase: str


@dataclass(frozen=True)
class PlaceReading:
    """A place of the collection named in the query, and how the caller should use it."""

    name: str  # the value of a `place` filter: a city, region or country as the catalog stores it
    fields: tuple[str, ...]  # which of city / region / country carry that name
    use: PlaceUse
    why: str


@dataclass(frozen=True)
class PersonReading:
    """A person the user named, named in the query: the `person` filter's value is the id."""

    id: str
    name: str


@dataclass(frozen=True)
class Understood:
    """What a query says beside what it shows: the text left to embed, the dates and the place."""

    query: str
    text: str  # the query without the phrases read; "" when it was nothing else
    taken_after: date | None = None  # inclusive
    taken_before: date | None = None  # inclusive
    place: PlaceReading | None = None
    spans: tuple[Span, ...] = ()
    people: tuple[PersonReading, ...] = ()  # in the order named, each once
    notes: tuple[str, ...] = ()

    @property
    def person(self) -> PersonReading | None:
        """The first person named (None when none is)."""
        return self.people[0] if self.people else None

    @property
    def read(self) -> bool:
        """True when anything was read."""
        return bool(self.spans)

    @property
    def has_content(self) -> bool:
        """True when the text left says what the photos show (not only "photos", "pictures of")."""
        return has_content(self.text)

    def to_json(self) -> dict[str, Any]:
        """The `understood` object of a search response."""
        place = self.place
        return {
            "text": self.text,
            "taken_after": self.taken_after.isoformat() if self.taken_after else None,
            "taken_before": self.taken_before.isoformat() if self.taken_before else None,
            "place": None
            if place is None
            else {"name": place.name, "fields": list(place.fields), "use": place.use, "why": place.why},
            "person": None if self.person is None else {"id": self.person.id, "name": self.person.name},
            "people": [{"id": person.id, "name": person.name} for person in self.people],
            "read": [{"kind": span.kind, "phrase": span.phrase} for span in self.spans],
            "notes": list(self.notes),
        }


def has_content(text: str) -> bool:
    """Whether a text has a word that is not a filler ("photos", "of", "my"…)."""
    return any(word.casefold() not in FILLERS for word in _WORDS.findall(text))


def understand(
    text: str, today: date, places: PlaceMatcher | None = None, names: NameMatcher | None = None
) -> Understood:
    """Read the date, the person and the place typed in `text` (see the module docstring); never raises."""
    today = today.date() if isinstance(today, datetime) else today
    date_read = _read_date(text, today)
    spans: list[Span] = []
    notes: tuple[str, ...] = ()
    period = Period(None, None)
    if date_read is not None:
        span, period, notes = date_read
        spans.append(span)
    people = _read_people(text, names, spans) if names is not None else ()
    place: PlaceReading | None = None
    if places is not None and len(places):
        place_read = _read_place(text, places, spans)
        if place_read is not None:
            place_span, place = place_read
            spans.append(place_span)
    spans.sort(key=lambda span: span.start)
    return Understood(
        query=text,
        text=_remove(text, spans),
        taken_after=period.first,
        taken_before=period.last,
        place=place,
        spans=tuple(spans),
        notes=notes,
        people=people,
    )


def _read_people(text: str, names: NameMatcher, spans: list[Span]) -> tuple[PersonReading, ...]:
    """Every person named in the text outside the phrases already read, each once (their spans added
    to `spans`)."""
    people: dict[str, PersonReading] = {}
    for mention in names.find(text):
        if not any(span.start < mention.end and mention.start < span.end for span in spans):
            spans.append(Span("person", mention.start, mention.end, text[mention.start : mention.end]))
            people.setdefault(mention.person, PersonReading(mention.person, mention.name))
    return tuple(people.values())


def _read_date(text: str, today: date) -> tuple[Span, Period, tuple[str, ...]] | None:
    """The first date phrase of the text: its span, its period and notes on how it was read."""
    atoms = list(_ATOM.finditer(text))
    joined = False  # joined to the atom before ("2021 to 2019") without making a range with it
    for i, atom in enumerate(atoms):
        after = atoms[i + 1] if i + 1 < len(atoms) else None
        read = _range(text, atom, after, today)
        if read is None:
            joins = after is not None and _JOIN.fullmatch(text, atom.end(), after.start()) is not None
            if joined or joins:  # neither side of a pair that is no range: "in 2019 and 2020"
                joined = joins
                continue
            read = _single(text, atom, today)
        if read is not None:
            start, end, period = read
            notes = _notes(text[start:end], period)
            return Span("date", start, end, text[start:end].strip()), period, notes
    return None


def _single(text: str, atom: re.Match[str], today: date) -> tuple[int, int, Period] | None:
    """One period in its context: "in 2018", "since July 2019", "beach 2019"; None when not a date."""
    period = _period(atom, today)
    if period is None or period.first is None or period.last is None:
        return None
    kind = atom.lastgroup or ""
    if kind == "year" and (
        (text[atom.start() - 1 : atom.start()] in "/.-:" and atom.start() > 0)
        or _DIGIT_NEXT.match(text, atom.end())
    ):
        return None  # part of a date written some other way (14/07/2019), or of a code
    lead = _LEAD.search(text, 0, atom.start())
    word = lead.group("word").casefold() if lead else None
    if word == "between" or (kind in _CONTEXTUAL and word in (None, "of") and not _in_context(text, atom)):
        return None
    start = lead.start() if lead and word != "of" else atom.start()
    if word == "since":
        return start, atom.end(), Period(period.first, None)
    if word == "after":
        return start, atom.end(), Period(period.last + timedelta(days=1), None)
    if word == "before":
        return start, atom.end(), Period(None, period.first - timedelta(days=1))
    if word in ("until", "till", "through"):
        return start, atom.end(), Period(None, period.last)
    return start, atom.end(), period


def _range(
    text: str, first: re.Match[str], second: re.Match[str] | None, today: date
) -> tuple[int, int, Period] | None:
    """ "from 2019 to 2021", "between March and May 2020", "2019-2021"; None when not a range."""
    if second is None:
        return None
    join = _JOIN.fullmatch(text, first.end(), second.start())
    if join is None or second.lastgroup == "month":
        return None
    lead = _LEAD.search(text, 0, first.start())
    word = lead.group("word").casefold() if lead else None
    if word not in (None, "from", "between", "in", "during") or (word == "between") != (
        "and" in join.group()
    ):
        return None
    end = _period(second, today)
    if end is None or end.first is None or end.last is None:
        return None
    begin = _period(first, today)
    if first.lastgroup == "month":  # "from March to May 2020": the month takes the end's year
        month = MONTHS[first.group("mo").casefold().rstrip(".")]
        year = end.first.year - (month > end.first.month)
        begin = Period(date(year, month, 1), _month_end(year, month))
    if begin is None or begin.first is None or begin.first > end.last:
        return None
    return (lead.start() if lead else first.start()), second.end(), Period(begin.first, end.last)


def _period(atom: re.Match[str], today: date) -> Period | None:
    """The calendar days one date phrase names; None when it names none (a year to come, 31 February)."""
    g = atom.groupdict()
    try:
        match atom.lastgroup:
            case "iso":
                return _ymd(int(g["iy"]), int(g["im"]), int(g["id"]) if g["id"] else None, today)
            case "dmy":
                return _ymd(int(g["dy"]), _month(g["dm"]), int(re.sub(r"\D", "", g["dd"])), today)
            case "mdy":
                return _ymd(int(g["my"]), _month(g["mm"]), int(re.sub(r"\D", "", g["md"])), today)
            case "monthyear":
                return _ymd(int(g["yy"]), _month(g["ym"]), None, today)
            case "season":
                return _season(int(g["sy"]), g["ss"].casefold(), today)
            case "year":
                return _ymd(int(g["yr"]), None, None, today)
            case "decade":
                return _decade(g, today)
            case "month":
                return Period(None, None)  # a month of no year: only inside a range
            case _:
                return _relative(atom, today)
    except ValueError:  # 31 February and the like
        return None


def _ymd(year: int, month: int | None, day: int | None, today: date) -> Period | None:
    """A year, a month of a year or a day, when it is not in the future nor before `FIRST_YEAR`."""
    if not FIRST_YEAR <= year <= today.year:
        return None
    if month is None:
        return Period(date(year, 1, 1), date(year, 12, 31))
    if day is None:
        return Period(date(year, month, 1), _month_end(year, month))
    return Period(date(year, month, day), date(year, month, day))


def _season(year: int, season: str, today: date) -> Period | None:
    """A northern meteorological season of a year (winter: December of that year to February)."""
    if not FIRST_YEAR <= year <= today.year:
        return None
    first = date(year, SEASONS[season], 1)
    last_month = _add_months(first, 2)
    return Period(first, _month_end(last_month.year, last_month.month))


def _decade(g: dict[str, str | None], today: date) -> Period | None:
    """ "the 1990s", "the 90s"."""
    if g["dc"]:
        year = int(f"{g['dc']}{g['dx']}0")
    else:  # the latest such decade that has begun: "the 90s" → 1990, "the 10s" → 2010
        year = 2000 + int(g["dz"] or 0) * 10
        year -= 100 if year > today.year else 0
    if not FIRST_YEAR <= year <= today.year:
        return None
    return Period(date(year, 1, 1), date(year + 9, 12, 31))


def _relative(atom: re.Match[str], today: date) -> Period | None:
    """Dates counted from `today`: "yesterday", "last week", "last summer", "3 days ago"."""
    g = {key: (value or "").casefold() for key, value in atom.groupdict().items()}
    kind = atom.lastgroup
    if kind == "day":
        back = 2 if "before" in g["day"] else 1 if "yesterday" in g["day"] else 0
        return Period(today - timedelta(days=back), today - timedelta(days=back))
    if kind == "ago":
        return _unit_of(_shift(today, g["au"], -_count(g["an"])), g["au"])
    if kind == "span":
        first = _shift(today, g["pu"], -_count(g["pn"])) + timedelta(days=1)
        return Period(first, today)
    if kind == "lastmonth":
        month = _month(g["lm"])
        year = today.year if month < today.month else today.year - 1
        return Period(date(year, month, 1), _month_end(year, month))
    unit, word = g["ru"], g["rw"]
    if unit in SEASONS:
        year = today.year if word == "this" else _last_season_year(unit, today)
        return _season(year, unit, today)
    if word == "past":
        return Period(_shift(today, unit.replace("weekend", "week"), -1) + timedelta(days=1), today)
    if unit == "weekend":  # this week's Saturday and Sunday, or the last ones before today
        back = today.weekday() + 1 if word != "this" else today.weekday() - 6
        sunday = today - timedelta(days=back)
        return Period(sunday - timedelta(days=1), sunday)
    current = _unit_of(today, unit)
    if word == "this" or current.first is None:
        return current
    return _unit_of(current.first - timedelta(days=1), unit)


def _unit_of(day: date, unit: str) -> Period:
    """The day, calendar week (Monday to Sunday), month or year that holds a day."""
    if unit.startswith("day"):
        return Period(day, day)
    if unit.startswith("week"):
        monday = day - timedelta(days=day.weekday())
        return Period(monday, monday + timedelta(days=6))
    if unit.startswith("month"):
        return Period(day.replace(day=1), _month_end(day.year, day.month))
    return Period(date(day.year, 1, 1), date(day.year, 12, 31))


def _last_season_year(season: str, today: date) -> int:
    """The year of the latest such season that ended before today ("last summer")."""
    year = today.year
    while True:
        period = _season(year, season, date(year, 12, 31))
        if period is not None and period.last is not None and period.last < today:
            return year
        year -= 1


def _shift(day: date, unit: str, count: int) -> date:
    """A day moved by whole days, weeks, months or years (a month end is kept inside its month)."""
    if unit.startswith("day"):
        return day + timedelta(days=count)
    if unit.startswith("week"):
        return day + timedelta(weeks=count)
    months = count if unit.startswith("month") else 12 * count
    moved = _add_months(day.replace(day=1), months)
    return moved.replace(day=min(day.day, calendar.monthrange(moved.year, moved.month)[1]))


def _add_months(first_of_month: date, months: int) -> date:
    """The first day of the month `months` later."""
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month_end(year: int, month: int) -> date:
    """The last day of a month."""
    return date(year, month, calendar.monthrange(year, month)[1])


def _month(name: str | None) -> int:
    """A month's number from its name or abbreviation."""
    return MONTHS[(name or "").casefold().rstrip(".")]


def _count(word: str) -> int:
    """A count written in digits or in words ("3", "three", "a")."""
    return int(word) if word.isdigit() else NUMBERS[word]


def _in_context(text: str, atom: re.Match[str]) -> bool:
    """A year or decade with no preposition that still reads as a date: alone, or a year ending the query."""
    kind = atom.lastgroup
    return kind != "month" and (_alone(text, atom) or (kind == "year" and _ends_query(text, atom)))


def _alone(text: str, atom: re.Match[str]) -> bool:
    """Whether nothing but filler words surrounds the phrase ("2019", "photos 2019", "the 90s")."""
    return not has_content(text[: atom.start()] + " " + text[atom.end() :])


def _ends_query(text: str, atom: re.Match[str]) -> bool:
    """A year that ends the query after a word that does not make it a name ("beach 2019", not "route 66")."""
    if text[atom.end() :].strip(" \t.,;:!?"):
        return False
    before = _WORDS.findall(text[: atom.start()])
    return bool(before) and before[-1].casefold() not in _NOT_A_YEAR_AFTER


def _notes(phrase: str, period: Period) -> tuple[str, ...]:
    """What a reader should know about how a phrase was read."""
    season = next((name for name in SEASONS if re.search(rf"\b{name}\b", phrase, re.IGNORECASE)), None)
    if season is None:
        return ()
    first = period.first.strftime("%B %Y") if period.first else "…"
    last = period.last.strftime("%B %Y") if period.last else "…"
    return (f"'{phrase.strip()}' read as {first} to {last} (northern-hemisphere seasons)",)


def _read_place(text: str, places: PlaceMatcher, taken: list[Span]) -> tuple[Span, PlaceReading] | None:
    """The first place of the collection the text names in a way that reads as a place."""
    for mention in places.find(text):
        if any(span.start < mention.end and mention.start < span.end for span in taken):
            continue
        lead = _PLACE_LEAD.search(text, 0, mention.start)
        start = lead.start() if lead else mention.start
        rest = _remove(text, [*taken, Span("place", start, mention.end, "")])
        alone = not has_content(rest)
        if lead is None and not alone and not _named(text, mention):
            continue
        if alone:
            why = "the query names only a place: photos taken elsewhere are left out"
        else:
            why = f"the query also asks for '{rest}': photos taken there rank first, others still show"
        use: PlaceUse = "filter" if alone else "preference"
        reading = PlaceReading(mention.name, mention.fields, use, why)
        return Span("place", start, mention.end, text[start : mention.end]), reading
    return None


def _named(text: str, mention: PlaceMention) -> bool:
    """A capitalised name inside the query, not part of a longer name ("dog Florence", not "Paris Hilton")."""
    if mention.start == 0 or not text[mention.start].isupper():
        return False
    before = _WORDS.findall(text[: mention.start])
    after = _WORDS.findall(text[mention.end :])
    return not (before and before[-1].casefold() == "of") and not (after and after[0][:1].isupper())


def _remove(text: str, spans: list[Span]) -> str:
    """The text without some spans, spaces collapsed, no dangling "and" or punctuation at its ends."""
    kept, at = [], 0
    for span in sorted(spans, key=lambda span: span.start):
        kept.append(text[at : span.start])
        at = max(at, span.end)
    kept.append(text[at:])
    words = " ".join("".join(kept).split())
    while True:
        trimmed = re.sub(r"^(?:and|or)\b|\b(?:and|or)$", "", words.strip(" \t,;:.-–—"), flags=re.IGNORECASE)
        trimmed = trimmed.strip(" \t,;:.-–—")
        if trimmed == words:
            return words
        words = trimmed
