"""Stage 5c: the index's catalog — per-image metadata and the lexical tables, in the generation's manifest.

Build side: `write` adds a `metadata` table (app/metadata.py `COLUMNS`), the two FTS5 tables of
app/lexical.py and the `texts` table to a finished manifest, one row per indexed image (`texts`: one
per image whose text was read, carried over from the previous generation on an update and filled by
the text stage, app/text_stage.py; `faces` and `faces_read` likewise, filled by the opt-in faces stage,
app/face_stage.py); `write_lending` then stores what each unnamed picture borrows from its named
look-alikes (app/propagation.py). A folder's files are read from
their headers only (`read_file_metadata`: no pixel decode); a dataset's images from the originals
the generation stores, plus the text of its `--text-column`s. A file that cannot be read again
keeps what the manifest knows (folder, name, size, format).

Service side: a `Catalog` reads the catalog of an opened index for the service that serves it and
keeps what it read until it is closed. An index built before the catalog existed still opens and
searches by meaning; asking it for filters, names or folders is a `Conflict` (409) saying how to
upgrade it: `imgsearch build … --update` rebuilds the catalog and reuses every vector.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from app import lexical
from app.errors import Conflict
from app.filters import Columns, Filters, PersonRows
from app.index import ImageRecord, Index, original_name
from app.lexical import LexicalDoc, LexicalHit
from app.metadata import COLUMNS, ImageMetadata, read_bytes_metadata, read_file_metadata, table_sql
from app.places import PlaceMatcher, places_at
from app.propagation import Lending, Words, lendable, propagate, store, stored
from app.sources import Source

log = logging.getLogger(__name__)
R = TypeVar("R")

TABLE = "metadata"
TEXTS = "texts"  # the text read in each picture: a row once the text stage has read it (maybe "")
TEXTS_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TEXTS} (id TEXT PRIMARY KEY, text TEXT NOT NULL, lines TEXT NOT NULL)"
)
FACES = "faces"  # the faces found in each picture by the faces stage (app/face_stage.py), opt-in
FACES_SQL = (
    f"CREATE TABLE IF NOT EXISTS {FACES} (face INTEGER PRIMARY KEY, id TEXT NOT NULL, x INTEGER NOT NULL, "
    "y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL, score REAL NOT NULL, size INTEGER NOT NULL, "
    "descriptor BLOB NOT NULL, person TEXT)"
)
FACES_READ = "faces_read"  # a row per picture whose faces were looked for, found or not
FACES_READ_SQL = f"CREATE TABLE IF NOT EXISTS {FACES_READ} (id TEXT PRIMARY KEY, faces INTEGER NOT NULL)"
CHUNK = 500  # rows per SELECT … IN (…) (SQLite caps the number of parameters)
UPGRADE = (
    "this index was built before metadata and file names were indexed; upgrade it (vectors are reused): "
    "imgsearch build --images FOLDER --index-dir INDEX_DIR --update"
)


def _fallback(record: ImageRecord) -> ImageMetadata:
    """What the manifest alone says about an image whose file cannot be read again."""
    path = PurePosixPath(record.source)
    folder = "" if str(path.parent) == "." else str(path.parent)
    return ImageMetadata(folder, path.name, record.format, record.width, record.height)


def read_record(record: ImageRecord, source: Source, generation: Path) -> ImageMetadata:
    """One image's metadata: its file's headers, or its stored original plus the dataset's text."""
    try:
        if not source.stores_originals and source.root is not None:
            return read_file_metadata(source.root / record.source, source.root)
        data = (generation / original_name(record.id, record.format)).read_bytes()
        found = replace(read_bytes_metadata(data, record.source), folder="", name=record.source)
    except Exception as exc:  # a file moved or broken since it was encoded keeps its place in the index
        log.debug("metadata of %s not read: %r", record.source, exc)
        found = _fallback(record)
    descriptions, keywords = source.texts(record.source)
    return found.with_text(descriptions, keywords) if descriptions or keywords else found


def write(
    manifest: Path,
    records: Sequence[ImageRecord],
    source: Source,
    generation: Path,
    previous: Path | None = None,
) -> None:
    """Add the metadata, lexical and texts tables for `records` to the manifest at `manifest`; the
    text already read in the pictures the `previous` manifest holds is carried over."""
    names = ", ".join(["id", *(name for name, _ in COLUMNS)])
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    connection = sqlite3.connect(manifest)
    try:
        connection.execute(TEXTS_SQL)
        if previous is not None:
            carry_texts(connection, previous)
            carry_faces(connection, previous)
        with connection:
            connection.execute(table_sql(TABLE))
            lexical.create_tables(connection)
            for first in range(0, len(records), lexical.INSERT_CHUNK):
                chunk = records[first : first + lexical.INSERT_CHUNK]
                found = [(record, read_record(record, source, generation)) for record in chunk]
                connection.executemany(
                    f"INSERT INTO {TABLE} ({names}) VALUES ({marks})",
                    [(record.id, *meta.to_row()) for record, meta in found],
                )
                read = texts_of(connection, [record.id for record in chunk])
                lexical.insert(
                    connection,
                    (LexicalDoc.of(record.row, meta, read.get(record.id, "")) for record, meta in found),
                )
    finally:
        connection.close()


def has_texts(connection: sqlite3.Connection, schema: str = "main") -> bool:
    """True when the database holds the texts table (an index built before the text stage does not)."""
    return has_table(connection, TEXTS, schema)


def carry_texts(connection: sqlite3.Connection, previous: Path) -> None:
    """Copy the texts the `previous` manifest read for images this manifest holds (same id, same bytes)."""
    connection.execute("ATTACH DATABASE ? AS previous", (str(previous),))
    try:
        if has_texts(connection, "previous"):
            with connection:
                connection.execute(
                    f"INSERT OR IGNORE INTO {TEXTS} SELECT t.id, t.text, t.lines FROM previous.{TEXTS} t "
                    "JOIN images i ON i.id = t.id"
                )
    finally:
        connection.execute("DETACH DATABASE previous")


def carry_faces(connection: sqlite3.Connection, previous: Path) -> None:
    """Copy the faces the `previous` manifest found in images this manifest holds, ids and people kept
    (an image removed or changed since leaves its faces behind)."""
    connection.execute("ATTACH DATABASE ? AS previous", (str(previous),))
    try:
        if has_table(connection, FACES_READ, "previous") and has_table(connection, FACES, "previous"):
            with connection:
                connection.execute(FACES_SQL)
                connection.execute(FACES_READ_SQL)
                connection.execute(
                    f"INSERT OR IGNORE INTO {FACES} SELECT f.* FROM previous.{FACES} f "
                    "JOIN images i ON i.id = f.id"
                )
                connection.execute(
                    f"INSERT OR IGNORE INTO {FACES_READ} SELECT r.* FROM previous.{FACES_READ} r "
                    "JOIN images i ON i.id = r.id"
                )
    finally:
        connection.execute("DETACH DATABASE previous")


def has_table(connection: sqlite3.Connection, table: str, schema: str = "main") -> bool:
    """True when the database holds this table."""
    sql = f"SELECT count(*) FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?"
    return bool(connection.execute(sql, (table,)).fetchone()[0])


def texts_of(connection: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    """The text read in each of these images, for those whose text was read (maybe "")."""
    found: dict[str, str] = {}
    for first in range(0, len(ids), CHUNK):
        chunk = list(ids[first : first + CHUNK])
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT id, text FROM {TEXTS} WHERE id IN ({marks})"
        found.update((str(image), str(text)) for image, text in connection.execute(sql, chunk))
    return found


def lendable_words(connection: sqlite3.Connection, count: int) -> list[Words]:
    """Each row's lendable words (app/propagation.py `lendable`): of its file stem, and of its folder,
    title, description, keywords."""
    found: list[Words] = [(set(), set()) for _ in range(count)]
    sql = (
        "SELECT i.row, m.folder, m.name, m.title, m.description, m.keywords "
        f"FROM images i JOIN {TABLE} m ON m.id = i.id"
    )
    for row, folder, name, title, description, keywords in connection.execute(sql):
        if 0 <= int(row) < len(found):
            rest = [folder or "", title or "", description or "", *json.loads(keywords or "[]")]
            found[int(row)] = (lendable([PurePosixPath(name or "").stem]), lendable(rest))
    return found


def write_lending(manifest: Path, features: np.ndarray) -> int:
    """Propagate the names of a written catalog (`features`: the generation's unit feature rows) and store
    what each row borrows in the manifest (app/propagation.py `store`); the count of borrowing rows."""
    with closing(sqlite3.connect(manifest)) as connection:
        words = lendable_words(connection, len(features))
        lent = propagate(np.asarray(features, dtype=np.float32), words) if len(features) > 2 else {}
        with connection:
            store(connection, lent)
    return len(lent)


# -- the service side --------------------------------------------------------------------------------


PREFERENCE = 0.71  # coverage of a place read as a preference: it gains half what a full name match gains
SELECTIONS_KEPT = 8  # filters whose passing rows an opened index keeps (pages and new words under one filter)
BESIDE_THREADS = 4  # a hybrid search's second table query runs in a pool of this many threads
# An index built before builds stored propagation computes it at open (rows² × dimensions): larger skip it.
PROPAGATION_MAX_ROWS = 20_000


@dataclass(frozen=True)
class Selection:
    """The rows one filter lets through: as a mask over the vector rows and as sorted row numbers."""

    mask: np.ndarray  # bool, read-only
    rows: np.ndarray  # int64, sorted, read-only

    @classmethod
    def of(cls, mask: np.ndarray) -> Selection:
        """The selection of a mask."""
        rows = np.flatnonzero(mask).astype(np.int64)
        mask.setflags(write=False)
        rows.setflags(write=False)
        return cls(mask, rows)


class Passing:
    """The rows a filter lets through, as `row in passing` tests on its mask (no set of a million ints)."""

    def __init__(self, mask: np.ndarray) -> None:
        self._mask = mask

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < len(self._mask) and bool(self._mask[row])


class Catalog:
    """The catalog of one opened index, as the service reads it; made and closed with that service.

    It keeps what it has read (a generation never changes): whether the index has a catalog, the
    filter columns (app/filters.py `Columns`, read on the first filter), the rows of the last
    SELECTIONS_KEPT filters, and the threads a lexical search's second table query runs in.
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._present: bool | None = None
        self._texts: bool | None = None
        self._columns: Columns | None = None
        self._selections: OrderedDict[Filters, Selection] = OrderedDict()
        self._places: PlaceMatcher | None = None
        self._places_lock = threading.Lock()  # one naming of the places; a search needing them waits
        self._borrowed: Lending | None = None
        self._borrowed_lock = threading.Lock()  # one propagation; a search needing it waits
        self._beside = ThreadPoolExecutor(max_workers=BESIDE_THREADS, thread_name_prefix="lexical-grams")
        self.person_rows: PersonRows | None = None  # the `person` filter's rows (the service's people)

    def close(self) -> None:
        """Stop its threads (after the reads under way) and drop what it kept."""
        self._beside.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._columns = None
            self._selections.clear()

    @property
    def present(self) -> bool:
        """True when the index holds the metadata and lexical tables (asked once)."""
        if self._present is None:
            with self.index.manifest() as connection:
                found = connection.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = ?", (TABLE,)
                ).fetchone()
                self._present = bool(found and found[0]) and lexical.has_tables(connection)
        return self._present

    def require(self, wanted: str) -> None:
        """Conflict (409) naming what was asked for and how to upgrade, when the index has no catalog."""
        if not self.present:
            raise Conflict(f"{wanted} needs an index with metadata: {UPGRADE}")

    def columns(self) -> Columns:
        """The filter columns, read from the catalog on first use."""
        self.require("filtering")
        self.places()  # the `place` column's names, looked up together first (app/filters.py PLACE)
        with self._lock:
            if self._columns is None:
                started = time.perf_counter()
                with self.index.manifest() as connection:
                    self._columns = Columns.load(connection, TABLE)
                took = time.perf_counter() - started
                log.info("filter columns of %d images read in %.2fs", self.index.count, took)
            self._columns.people = self.person_rows
            return self._columns

    def forget(self) -> None:
        """Drop the kept selections (people were named or merged: a person filter selects anew)."""
        with self._lock:
            self._selections.clear()

    def selection(self, filters: Filters) -> Selection | None:
        """The rows that pass `filters` (None: no filter given, every row passes); the last
        SELECTIONS_KEPT filters' are kept, so paging or new words under one filter test no row again."""
        if filters.is_empty:
            return None
        columns = self.columns()
        with self._lock:
            found = self._selections.get(filters)
            if found is not None:
                self._selections.move_to_end(filters)
                return found
        found = Selection.of(filters.mask(columns))
        with self._lock:
            self._selections[filters] = found
            while len(self._selections) > SELECTIONS_KEPT:
                self._selections.popitem(last=False)
        return found

    def allowed_rows(self, filters: Filters) -> np.ndarray | None:
        """The sorted vector rows that pass `filters` (None: every row passes, no filter given)."""
        found = self.selection(filters)
        return None if found is None else found.rows

    def metadata(self, rows: Sequence[int]) -> dict[int, ImageMetadata]:
        """The stored metadata of the given vector rows (empty for an index without a catalog)."""
        if not rows or not self.present:
            return {}
        names = ", ".join(f"m.{name}" for name, _ in COLUMNS)
        select = f"SELECT i.row, {names} FROM images i JOIN {TABLE} m ON m.id = i.id WHERE i.row IN"
        found: dict[int, ImageMetadata] = {}
        with self.index.manifest() as connection:
            for first in range(0, len(rows), CHUNK):
                chunk = list(rows[first : first + CHUNK])
                marks = ", ".join("?" * len(chunk))
                for row, *values in connection.execute(f"{select} ({marks})", chunk):
                    found[int(row)] = ImageMetadata.from_row(values)
        return found

    def text_in_image(self, image_id: str) -> str | None:
        """The text read in one picture ("" for none found); None when it was not read (the index was
        built with OCR off, or its text stage has not reached this picture yet)."""
        with self.index.manifest() as connection:
            if self._texts is None:
                self._texts = has_texts(connection)
            return texts_of(connection, [image_id]).get(image_id) if self._texts else None

    def folders(self) -> list[tuple[str, int]]:
        """Every folder that directly holds indexed images, with its image count, by name."""
        self.require("the folder list")
        sql = f"SELECT folder, count(*) FROM {TABLE} GROUP BY folder ORDER BY folder"
        with self.index.manifest() as connection:
            return [(str(folder), int(count)) for folder, count in connection.execute(sql)]

    def places(self) -> PlaceMatcher:
        """The places this index's photos were taken in, to find in a query (named once, from the
        distinct GPS positions; empty without GPS or without a catalog)."""
        with self._places_lock:
            if self._places is None:
                positions: list[tuple[float, float]] = []
                if self.present:
                    sql = f"SELECT DISTINCT latitude, longitude FROM {TABLE} WHERE latitude IS NOT NULL"
                    with self.index.manifest() as connection:
                        positions = connection.execute(sql).fetchall()
                found = {place for place in places_at(positions) if place is not None}
                self._places = PlaceMatcher(sorted(found, key=lambda place: place.label))
                if positions:
                    log.info("%d places named from %d GPS positions", len(found), len(positions))
            return self._places

    def warm(self) -> None:
        """Name the places (and read the filter columns), then propagate the names, ahead of the first
        search that needs them: the gazetteer loads in seconds, and each distinct position costs
        ~0.3 ms once."""
        try:
            if self.present and len(self.places()):
                self.columns()  # the `place` filter's column
            self.borrowed()
        except Exception as exc:  # a closed or broken index: the search that needs it will say so
            log.debug("catalog warm-up skipped: %r", exc)

    def borrowed(self) -> Lending:
        """The rows that borrow words from their named look-alikes, and what they borrow (app/propagation.py):
        as the build stored it, or for an index built before builds stored it, computed once from the unit
        features and each row's lendable words (empty without a catalog or past PROPAGATION_MAX_ROWS rows)."""
        with self._borrowed_lock:
            if self._borrowed is None:
                self._borrowed = Lending({})
                if self.present:
                    with self.index.manifest() as connection:
                        found = stored(connection)
                    if found is not None:
                        self._borrowed = Lending(found)
                    elif 2 < self.index.count <= PROPAGATION_MAX_ROWS:
                        self._borrowed = self._propagated()
            return self._borrowed

    def _propagated(self) -> Lending:
        """Propagation computed at open (an index whose build did not store it)."""
        started = time.perf_counter()
        features = np.asarray(self.index.features, dtype=np.float32)
        with self.index.manifest() as connection:
            words = lendable_words(connection, self.index.count)
        found = Lending(propagate(features, words))
        took = time.perf_counter() - started
        log.info("%d unnamed images borrow words from named look-alikes (%.2fs)", len(found), took)
        return found

    def borrowed_parts(self, text: str, allowed: np.ndarray | None) -> dict[int, float]:
        """Each row whose borrowed words match `text` (among `allowed`, a row mask), with its propagated
        part ω × coverage (app/propagation.py `Lending.parts`)."""
        return dict(self.borrowed().parts(text, allowed))

    def with_places(
        self,
        hits: list[LexicalHit],
        text: str,
        allowed: np.ndarray | None,
        first: Sequence[int],
        limit: int,
        prefer: tuple[str, float] | None = None,
    ) -> list[LexicalHit]:
        """Lexical hits plus the `place` field: rows taken in a place `text` names, or in `prefer`
        (a place read from the query, with its coverage); rows of `first` (the vector head) first."""
        if not self.present or not len(self.places()):
            return hits
        named = [(m.name, lexical.share_of(text, text[m.start : m.end])) for m in self.places().find(text)]
        for name, coverage in [*named, *([prefer] if prefer else [])]:
            passing = self.selection(Filters.parse(place=name))
            mask = passing.mask if passing is not None else None
            if mask is None or not mask.any():
                continue
            mask = mask if allowed is None else mask & allowed
            head = [row for row in first if mask[row]]
            seen = set(head)
            rows = [*head, *(row for row in np.flatnonzero(mask)[:limit].tolist() if row not in seen)]
            hits = lexical.with_place(hits, rows, coverage, limit)
        return hits

    def search_text(self, text: str, limit: int, allowed: np.ndarray | None) -> list[LexicalHit]:
        """Rows whose name, folder or embedded text match `text`, best first (among `allowed`: a row mask)."""
        self.require("matching file names and metadata (mode lexical)")
        with self.index.manifest() as connection:
            passing = None if allowed is None else Passing(allowed)
            return lexical.search(connection, text, limit, passing, self._beside_read)

    def _beside_read(self, read: Callable[[sqlite3.Connection], R]) -> Future[R] | None:
        """`read` on a spare manifest connection, in the pool (`lexical.Beside`); None when none is free."""
        other = self.index.spare()
        if other is None:
            return None

        def run() -> R:
            try:
                return read(other)
            finally:
                self.index.give_back(other)

        return self._beside.submit(run)
