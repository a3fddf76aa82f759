"""Lexical index: file names, folders and embedded text in SQLite FTS5, tokenised as people name files.

Two FTS5 tables hold the same four columns (`name`, `folder`, `metadata`, and `text`: the text read in
the picture, app/ocr.py) for each image row:
`lexical_words` holds words — camelCase, snake_case, kebab-case and digit runs split
(`eiffelTower_2019.jpg` → `eiffel tower 2019`), case and accents folded (`Cité` = `cite`) — and is
queried with word prefixes; `lexical_grams` holds each name glued without separators in a trigram
table, so that `citedecarcassonne.webp` is found by "Cité de Carcassonne" and `CitéDeCarcassonne` by
"carcassonne". Scores are BM25 (larger is better), summed over both tables. User text never reaches
FTS5's query syntax: it is cut into words and each word is quoted.

A fourth field, `place`, is no table column: the place a photo was taken in is named from its GPS
position when the catalog is opened (app/places.py), and app/catalog.py adds the rows taken in a place
the query names to these hits with `with_place` (each scores as the query's best word match, scaled
in the fusion by how much of the query the place's name covers: `share_of`).

Wiring: app/catalog.py calls `create_tables` and `insert` on the generation's `manifest.sqlite`
with one `LexicalDoc.of(row, metadata, text)` per image row, and the text stage (app/text_stage.py)
fills `text` later with `set_texts`; the service calls `search` (with the rows a
filter allows) and fuses its hits with the vector ranking (`app.ranking.FusedCandidates`, the
weighted sum of `app.fusion`, which scales each hit by its `coverage`), reporting each hit's `matched`
fields.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import PurePosixPath
from typing import Literal

from app.metadata import ImageMetadata

Field = Literal["name", "folder", "metadata", "text", "place"]  # place: derived from GPS, not an FTS5 column
OWN_FIELDS: frozenset[Field] = frozenset({"metadata", "text"})  # one picture's words (not folder or place)
# Runs a read on another connection to the same database, concurrently (app/catalog.py gives one).
# None: no other connection is free, and the read runs after the first one instead.
Beside = Callable[
    [Callable[[sqlite3.Connection], list[tuple[int, float]]]], Future[list[tuple[int, float]]] | None
]
FIELDS: tuple[Field, ...] = ("name", "folder", "metadata", "text")  # an older index's tables lack `text`
WORDS, GRAMS = "lexical_words", "lexical_grams"
FIELD_WEIGHTS = (2.0, 1.0, 1.0, 1.0)  # BM25 weight of a hit in name, folder, metadata, text
GRAM_WEIGHT = 0.5  # a substring hit counts half a word hit
GLUED_MIN = 5  # shorter strings are not looked up inside glued names ("cat" is in "education")
PREFIX_MIN = 4  # shorter words match whole or plural: as prefixes "cat" finds "cathedral", "a" everything
MATCHED_CHUNK = 500  # rows per query when finding which fields matched
INSERT_CHUNK = 10_000  # documents tokenised and inserted at a time
# Words a query may carry that say nothing about a picture; dropped unless nothing else is left.
_STOPWORD_TEXT = (
    "a an the of in on at and or with to for by from is are this that my our your its "
    "photo picture image pic img de la le les des du el los las et"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class LexicalDoc:
    """What the lexical index holds for one image row."""

    row: int
    name: str  # file name; its extension is not indexed
    folder: str  # relative folder, "/"-separated
    text: str  # embedded text (titles, descriptions, keywords), one item per line
    image_text: str = ""  # the text read in the picture (app/ocr.py), one row of it per line

    @classmethod
    def of(cls, row: int, metadata: ImageMetadata, image_text: str = "") -> LexicalDoc:
        """The document of an image from its stored metadata and the text read in it."""
        return cls(row, metadata.name, metadata.folder, metadata.text, image_text)


@dataclass(frozen=True)
class LexicalHit:
    """One lexical match: the row, its BM25 score (larger is better), the fields that matched, its coverage.

    `coverage` ∈ [0, 1] says how fully the match explains the query or the name (`coverages`): 1 for
    `red-car.jpg` and "a red car", 0.5 for `red-apple.jpg`, whose "red" is one of two content words.
    """

    row: int
    score: float
    matched: tuple[Field, ...]
    coverage: float = 1.0
    shares: tuple[float, float] = (1.0, 1.0)  # (query share, name share): `coverages`

    @property
    def weak(self) -> bool:
        """Not a file-name match of the whole query: no name matched, or only part of the query's words."""
        return "name" not in self.matched or self.shares[0] < 1.0

    @property
    def own(self) -> float:
        """How fully the picture's own words explain the query, for the clear-look margin (app/fusion.py):
        the share of its file name's letters the query explains when the name matched, else 1 for a match
        in its own titles, keywords or the text read in it, and 0 for a match only in words that many
        pictures share (its folder, its place)."""
        if "name" in self.matched:
            return self.shares[1]
        return 1.0 if OWN_FIELDS & set(self.matched) else 0.0


def fold(text: str) -> str:
    """Lower case without accents: "Cité" → "cite", "Straße" → "strasse"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def _pieces(run: str) -> list[str]:
    """Split one run of letters and digits at case changes and letter/digit boundaries."""
    pieces: list[str] = []
    start = 0
    for i in range(1, len(run)):
        before, char = run[i - 1], run[i]
        if (
            before.isdigit() != char.isdigit()
            or (before.islower() and char.isupper())
            or (before.isupper() and char.isupper() and i + 1 < len(run) and run[i + 1].islower())
        ):
            pieces.append(run[start:i])
            start = i
    pieces.append(run[start:])
    return pieces


def words(text: str) -> list[str]:
    """Folded words as people write them in names: "eiffelTower_2019-Cité" → eiffel tower 2019 cite."""
    runs = "".join(char if char.isalnum() else " " for char in text).split()
    return [word for run in runs for piece in _pieces(run) if (word := fold(piece))]


def _glued(parts: Iterable[str]) -> str:
    """Each part's words written together, parts apart: what the trigram table matches inside."""
    return " ".join(glued for part in parts if (glued := "".join(words(part))))


Values = tuple[str, ...]  # one table's values of a row, in FIELDS order


def _columns(doc: LexicalDoc) -> tuple[Values, Values]:
    """(words table values, grams table values) for one document."""
    stem = PurePosixPath(doc.name).stem if "." in doc.name else doc.name
    folders = doc.folder.replace("\\", "/").split("/")
    lines = doc.text.splitlines()
    spaced = (" ".join(words(stem)), " ".join(words(doc.folder)), " ".join(words(doc.text)))
    glued = (_glued([stem]), _glued(folders), _glued(lines))
    text_words, text_glued = _text_columns(doc.image_text)
    return (*spaced, text_words), (*glued, text_glued)


def _text_columns(text: str) -> tuple[str, str]:
    """The words and glued rows of the text read in a picture (the `text` column of each table)."""
    return " ".join(words(text)), _glued(text.splitlines())


def create_tables(connection: sqlite3.Connection) -> None:
    """Create both FTS5 tables (SQLite ≥ 3.34 for the trigram tokenizer)."""
    columns = ", ".join(FIELDS)
    connection.execute(
        f"CREATE VIRTUAL TABLE {WORDS} USING fts5({columns}, tokenize='unicode61 remove_diacritics 2')"
    )
    connection.execute(f"CREATE VIRTUAL TABLE {GRAMS} USING fts5({columns}, tokenize='trigram')")


def has_tables(connection: sqlite3.Connection) -> bool:
    """True when the database holds the lexical tables (an index built before them does not)."""
    found = connection.execute(
        "SELECT count(*) FROM sqlite_master WHERE name IN (?, ?)", (WORDS, GRAMS)
    ).fetchone()
    return bool(found and found[0] == 2)


def insert(connection: sqlite3.Connection, docs: Iterable[LexicalDoc]) -> None:
    """Index documents (each row id once), a chunk at a time."""
    names, marks = ", ".join(FIELDS), ", ".join("?" * len(FIELDS))
    pending = iter(docs)
    while chunk := list(islice(pending, INSERT_CHUNK)):
        columns = [(doc.row, _columns(doc)) for doc in chunk]
        for i, table in enumerate((WORDS, GRAMS)):
            connection.executemany(
                f"INSERT INTO {table}(rowid, {names}) VALUES (?, {marks})",
                [(row, *values[i]) for row, values in columns],
            )


def has_text_column(connection: sqlite3.Connection) -> bool:
    """True when the lexical tables have the `text` column (an index built before it: False)."""
    columns = connection.execute(f"SELECT * FROM {WORDS} LIMIT 0").description
    return any(column[0] == "text" for column in columns)


def set_texts(connection: sqlite3.Connection, texts: Iterable[tuple[int, str]]) -> None:
    """Put the text read in pictures, (row, text) pairs, into the `text` column of both tables."""
    values = [(row, *_text_columns(text)) for row, text in texts]
    for i, table in enumerate((WORDS, GRAMS)):
        connection.executemany(
            f"UPDATE {table} SET text = ? WHERE rowid = ?", [(value[1 + i], value[0]) for value in values]
        )


def _quoted(term: str) -> str:
    """An FTS5 string: whatever it holds is matched as text, never read as syntax."""
    return '"' + term.replace('"', '""') + '"'


def _word(term: str) -> str:
    """One query word in FTS5: a prefix from PREFIX_MIN letters on, else the word or its plural."""
    if term.isdigit():
        return _quoted(term)
    if len(term) >= PREFIX_MIN:
        return _quoted(term) + "*"
    return f"{_quoted(term)} OR {_quoted(term + 's')}"


def content_terms(query: str) -> list[str]:
    """The query's distinct words without stopwords (all of them when only stopwords are left)."""
    terms = list(dict.fromkeys(words(query)))
    return [term for term in terms if term not in STOPWORDS] or terms


def _word_pattern(term: str) -> str:
    """`_word`'s test as a regular expression over space-separated words: digits whole, a prefix from
    PREFIX_MIN letters on, else the word whole or plural."""
    if term.isdigit():
        return rf"(?<!\S){re.escape(term)}(?!\S)"
    if len(term) >= PREFIX_MIN:
        return rf"(?<!\S){re.escape(term)}"
    return rf"(?<!\S){re.escape(term)}s?(?!\S)"


def _covering_pattern(term: str) -> re.Pattern[str]:
    """Where `_covered(word, term) > 0` for some word of a space-separated text: whole or plural, a
    prefix from PREFIX_MIN letters on, anywhere inside a word from GLUED_MIN on (digits: whole)."""
    if term.isdigit() or len(term) < PREFIX_MIN:
        return re.compile(rf"(?<!\S){re.escape(term)}s?(?!\S)")
    if len(term) < GLUED_MIN:
        return re.compile(rf"(?<!\S){re.escape(term)}")
    return re.compile(re.escape(term))


@dataclass(frozen=True)
class _Plan:
    """What a query looks for: its content words (words table) and glued phrases (trigram table)."""

    terms: tuple[str, ...]
    phrases: tuple[str, ...]
    pattern: re.Pattern[str] | None = None  # a stored word that matches a term (the words table's test)

    @classmethod
    def of(cls, query: str) -> _Plan:
        """The plan of a user's text."""
        terms = list(dict.fromkeys(words(query)))
        kept = content_terms(query)
        glued = list(dict.fromkeys(["".join(terms), "".join(kept)]))  # "citedecarcassonne", "redcar"
        phrases = [phrase for phrase in glued if len(phrase) >= GLUED_MIN]
        phrases += [term for term in kept if len(term) >= GLUED_MIN and term not in glued]
        pattern = re.compile("|".join(_word_pattern(term) for term in kept)) if kept else None
        return cls(tuple(kept), tuple(phrases), pattern)

    def expressions(self, single_words: bool = True) -> dict[str, str]:
        """FTS5 MATCH expressions per table; empty when there is nothing to look for. Without
        `single_words`, the trigram table looks only for phrases glued from several query words."""
        found: dict[str, str] = {}
        if self.terms:
            found[WORDS] = " OR ".join(_word(term) for term in self.terms)
        phrases = [phrase for phrase in self.phrases if single_words or phrase not in self.terms]
        if phrases:
            found[GRAMS] = " OR ".join(_quoted(phrase) for phrase in phrases)
        return found

    def fields(self, spaced: tuple[str, ...], glued: tuple[str, ...]) -> tuple[Field, ...]:
        """The fields of a row that match, from its stored words and glued texts (what FTS5 matched)."""
        pattern = self.pattern
        return tuple(
            field
            for field, words_text, grams_text in zip(FIELDS, spaced, glued, strict=True)
            if (pattern is not None and pattern.search(words_text))
            or any(phrase in grams_text for phrase in self.phrases)
        )


def expressions(query: str) -> dict[str, str]:
    """FTS5 MATCH expressions of a user's text, per table; empty when the text has no words."""
    return _Plan.of(query).expressions()


def _ranked(
    connection: sqlite3.Connection, table: str, expression: str, limit: int, allowed: Container[int] | None
) -> list[tuple[int, float]]:
    """The best `limit` (row, score) of one table, among `allowed` rows when given."""
    weights = ", ".join(str(weight) for weight in FIELD_WEIGHTS)
    sql = f"SELECT rowid, -bm25({table}, {weights}) AS score FROM {table} WHERE {table} MATCH ? "
    sql += "ORDER BY score DESC, rowid"
    if allowed is None:
        return [
            (int(row), float(score))
            for row, score in connection.execute(sql + " LIMIT ?", (expression, limit))
        ]
    found: list[tuple[int, float]] = []
    for row, score in connection.execute(sql, (expression,)):
        if row in allowed:
            found.append((int(row), float(score)))
            if len(found) == limit:
                break
    return found


def _stored(connection: sqlite3.Connection, table: str, rows: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The texts a table holds for each row in FIELDS order, read by rowid ("" for a column an older
    index's table lacks)."""
    stored: dict[int, tuple[str, ...]] = {}
    for start in range(0, len(rows), MATCHED_CHUNK):
        chunk = list(rows[start : start + MATCHED_CHUNK])
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT rowid, * FROM {table} WHERE rowid IN ({marks})"
        for row, *fields in connection.execute(sql, chunk):
            padded = [*fields, *[""] * (len(FIELDS) - len(fields))]
            stored[int(row)] = tuple(str(field or "") for field in padded)
    return stored


def _scores(
    connection: sqlite3.Connection,
    plan: _Plan,
    limit: int,
    allowed: Container[int] | None,
    beside: Beside | None,
) -> dict[int, float]:
    """Each matching row's BM25 score: its words-table score plus GRAM_WEIGHT × its trigram-table score.

    A query word is looked up inside glued names ("tower" in "watchtower") only while the word matches
    leave room in the window: such rows rank below the word matches as a rule (a word match is a
    trigram match too and scores in both tables), and ranking the trigram table's thousands of matches
    of one word cost most of a hybrid search at 1 M names (docs/performance.md). Without a filter, the
    words' match count says so up front and `beside` runs the trigram table's query concurrently when
    it has a connection to spare.
    """
    tables = plan.expressions()
    scores: dict[int, float] = defaultdict(float)
    pending: Future[list[tuple[int, float]]] | None = None
    if beside is not None and allowed is None and WORDS in tables and GRAMS in tables:
        sql = f"SELECT count(*) FROM {WORDS} WHERE {WORDS} MATCH ?"
        count = int(connection.execute(sql, (tables[WORDS],)).fetchone()[0])
        grams = plan.expressions(single_words=count < limit).get(GRAMS)
        pending = beside(lambda other: _ranked(other, GRAMS, grams, limit, None)) if grams else None
        tables = {WORDS: tables[WORDS]} | ({GRAMS: grams} if grams and pending is None else {})
    for row, score in _ranked(connection, WORDS, tables[WORDS], limit, allowed) if WORDS in tables else []:
        scores[row] = score
    if len(scores) == limit:
        tables = plan.expressions(single_words=False)
    found = pending.result() if pending is not None else []
    if pending is None and GRAMS in tables:
        found = _ranked(connection, GRAMS, tables[GRAMS], limit, allowed)
    for row, score in found:
        scores[row] += GRAM_WEIGHT * score
    return scores


def search(
    connection: sqlite3.Connection,
    query: str,
    limit: int,
    allowed: Container[int] | None = None,
    beside: Beside | None = None,
) -> list[LexicalHit]:
    """Rows whose name, folder or embedded text match `query`, best first, at most `limit`.

    With `allowed`, only those rows are returned, and still up to `limit` of them. Any text is safe:
    quotes, `AND`, `-` or `*` are words or separators here, never FTS5 syntax. `beside`, when given,
    runs a read on another connection to the same database concurrently (the two tables' queries).
    """
    plan = _Plan.of(query)
    if limit < 1 or not plan.expressions():
        return []
    scores = _scores(connection, plan, limit, allowed, beside)
    best = sorted(scores, key=lambda row: (-scores[row], row))[:limit]
    # Which fields matched, and how fully, from the stored texts of these rows: asking FTS5 per
    # field re-ran the whole match six times (seconds at 1,000,000 images).
    spaced, glued = _stored(connection, WORDS, best), _stored(connection, GRAMS, best)
    shares = coverages(connection, query, best, spaced)
    empty = ("",) * len(FIELDS)
    return [
        LexicalHit(
            row,
            scores[row],
            plan.fields(spaced.get(row, empty), glued.get(row, empty)),
            max(shares[row]),
            shares[row],
        )
        for row in best
    ]


def _covered(word: str, probe: str) -> float:
    """How much of a stored word a query word matches: whole or plural 1, else the share its letters cover."""
    if word in (probe, probe + "s"):
        return 1.0
    if probe.isdigit():
        return 0.0
    prefix = len(probe) >= PREFIX_MIN and word.startswith(probe)
    return len(probe) / len(word) if prefix or (len(probe) >= GLUED_MIN and probe in word) else 0.0


def _query_share(terms: list[re.Pattern[str]], glued: list[str], fields: tuple[str, ...]) -> float:
    """Share of the query's content words (`_covering_pattern`s) a row's fields match; 1 when the whole
    query is glued into one of them."""
    if any(phrase in field.replace(" ", "") for field in fields for phrase in glued):
        return 1.0
    stored = " ".join(fields)
    return sum(1 for term in terms if term.search(stored)) / len(terms)


def _name_share(probes: list[str], name: str) -> float:
    """Share of the letters of a file name's words (digits and stopwords aside) that the query matches."""
    kept = [word for word in name.split() if not word.isdigit() and word not in STOPWORDS]
    if not probes:
        return 0.0
    letters = sum(len(word) for word in kept)
    covered = sum(len(word) * max(_covered(word, probe) for probe in probes) for word in kept)
    return covered / letters if letters else 0.0


def coverages(
    connection: sqlite3.Connection,
    query: str,
    rows: Sequence[int],
    stored: dict[int, tuple[str, ...]] | None = None,
) -> dict[int, tuple[float, float]]:
    """(query share, name share) of each row, each in [0, 1].

    Query share: the share of the query's content words the row's name, folder or text matches (1
    where the whole query is glued into one of them). Name share: the share of the letters of the
    file name's words that the query matches. For "a red car", `red-apple.png` is (0.5, 3/8) and
    `red-car.png` (1, 1); for the long query "a red apple on a branch", `apple_red.png` is (2/3, 1).
    """
    terms = list(dict.fromkeys(words(query)))
    content = content_terms(query)
    glued = [
        phrase for phrase in dict.fromkeys(["".join(terms), "".join(content)]) if len(phrase) >= GLUED_MIN
    ]
    patterns = [_covering_pattern(term) for term in content]
    if stored is None:  # the words table's texts of the rows (search() passes those it read)
        stored = _stored(connection, WORDS, rows)
    found: dict[int, tuple[float, float]] = {}
    for row in rows:
        fields = stored.get(row, ("",) * len(FIELDS))
        query_share = _query_share(patterns, glued, fields) if content else 0.0
        found[row] = (query_share, _name_share([*content, *glued], fields[0]))
    return found


def share_of(query: str, phrase: str) -> float:
    """The share of the query's content words a phrase of it holds ("italy" of "photos from italy": ½)."""
    content = content_terms(query)
    held = set(words(phrase))
    return sum(term in held for term in content) / len(content) if content else 1.0


def with_place(hits: list[LexicalHit], rows: Iterable[int], coverage: float, limit: int) -> list[LexicalHit]:
    """The hits with rows taken in a place the query names: each such row scores the best word match's
    score (1 without one) more, gains the field `place` and at least `coverage`; best first (rows in
    the order given after equal scores), at most `limit`."""
    best = max((hit.score for hit in hits), default=1.0)
    found = {hit.row: hit for hit in hits}
    for row in rows:
        hit = found.get(row)
        if hit is None:
            found[row] = LexicalHit(row, best, ("place",), coverage)
        elif "place" not in hit.matched:
            fields: tuple[Field, ...] = (*hit.matched, "place")
            found[row] = LexicalHit(row, hit.score + best, fields, max(hit.coverage, coverage))
    return sorted(found.values(), key=lambda hit: -hit.score)[:limit]
