"""Stage 5c: the index's catalog — per-image metadata and the lexical tables, in the generation's manifest.

Build side: `write` adds a `metadata` table (app/metadata.py `COLUMNS`) and the two FTS5 tables of
app/lexical.py to a finished manifest, one row per indexed image. A folder's files are read from
their headers only (`read_file_metadata`: no pixel decode); a dataset's images from the originals
the generation stores, plus the text of its `--text-column`s. A file that cannot be read again
keeps what the manifest knows (folder, name, size, format).

Service side: the functions below read the catalog of an opened index. An index built before the
catalog existed still opens and searches by meaning; asking it for filters, names or folders is a
`Conflict` (409) saying how to upgrade it: `imgsearch build … --update` rebuilds the catalog and
reuses every vector.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from app import lexical
from app.errors import Conflict
from app.index import ImageRecord, Index, original_name
from app.lexical import LexicalDoc, LexicalHit
from app.metadata import COLUMNS, ImageMetadata, read_bytes_metadata, read_file_metadata, table_sql
from app.query import Filters
from app.sources import Source

log = logging.getLogger(__name__)

TABLE = "metadata"
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


def write(manifest: Path, records: Sequence[ImageRecord], source: Source, generation: Path) -> None:
    """Add the metadata and lexical tables for `records` to the manifest at `manifest`."""
    names = ", ".join(["id", *(name for name, _ in COLUMNS)])
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    connection = sqlite3.connect(manifest)
    try:
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
                lexical.insert(connection, (LexicalDoc.of(record.row, meta) for record, meta in found))
    finally:
        connection.close()


# -- the service side --------------------------------------------------------------------------------


_known: weakref.WeakKeyDictionary[Index, bool] = weakref.WeakKeyDictionary()  # a generation never changes


def has_catalog(index: Index) -> bool:
    """True when the index holds the metadata and lexical tables (asked once per opened index)."""
    if index not in _known:
        with index.manifest() as connection:
            found = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = ?", (TABLE,)
            ).fetchone()
            _known[index] = bool(found and found[0]) and lexical.has_tables(connection)
    return _known[index]


def require(index: Index, wanted: str) -> None:
    """Conflict (409) naming what was asked for and how to upgrade, when the index has no catalog."""
    if not has_catalog(index):
        raise Conflict(f"{wanted} needs an index with metadata: {UPGRADE}")


V = TypeVar("V", str, str | None)
R = TypeVar("R")
_Values = tuple[str, str | None, int, int, datetime | str | None, bool]  # what a filter reads of a row
_UNKNOWN: _Values = ("", None, 0, 0, None, False)


@dataclass(frozen=True)
class FilterColumns:
    """What filters test, one array entry per vector row: a filter is a few vectorised comparisons.

    1,000,000 rows cost ≈ 40 MB and a filter over them a few milliseconds, where selecting the
    rows in SQL took hundreds (docs/performance.md). Images without a date hold NaT, which never
    passes a date bound.
    """

    known: np.ndarray  # bool: the row has metadata (every row of a catalog built whole)
    folders: tuple[str, ...]  # distinct folders; `folder` holds indices into them
    folder: np.ndarray  # int32
    formats: tuple[str | None, ...]
    format: np.ndarray  # int32 into `formats`
    width: np.ndarray  # int64
    height: np.ndarray  # int64
    taken_at: np.ndarray  # datetime64[s]
    has_gps: np.ndarray  # bool

    @classmethod
    def of(cls, stored: Sequence[ImageMetadata]) -> FilterColumns:
        """The columns of images given in row order."""
        return cls._from([(m.folder, m.format, m.width, m.height, m.taken_at, m.has_gps) for m in stored])

    @classmethod
    def load(cls, connection: sqlite3.Connection) -> FilterColumns:
        """The columns of an index's catalog, read once (a row the catalog lacks passes no filter)."""
        count = int(connection.execute("SELECT count(*) FROM images").fetchone()[0])
        sql = (
            "SELECT i.row, m.folder, m.format, m.width, m.height, m.taken_at, "
            "m.latitude IS NOT NULL AND m.longitude IS NOT NULL "
            f"FROM images i JOIN {TABLE} m ON m.id = i.id"
        )
        found: list[_Values | None] = [None] * count
        for row, *values in connection.execute(sql):
            found[int(row)] = (values[0], values[1], values[2], values[3], values[4], bool(values[5]))
        return cls._from(found)

    @classmethod
    def _from(cls, rows: Sequence[_Values | None]) -> FilterColumns:
        """Arrays from (folder, format, width, height, taken_at, has_gps) per row; None: unknown row."""
        known = np.fromiter((row is not None for row in rows), dtype=bool, count=len(rows))
        full = [row or _UNKNOWN for row in rows]
        folders, folder = _codes([row[0] for row in full])
        formats, format_ = _codes([row[1] for row in full])
        return cls(
            known=known,
            folders=folders,
            folder=folder,
            formats=formats,
            format=format_,
            width=np.fromiter((row[2] for row in full), dtype=np.int64, count=len(full)),
            height=np.fromiter((row[3] for row in full), dtype=np.int64, count=len(full)),
            taken_at=np.asarray([row[4] for row in full], dtype="datetime64[s]"),  # None → NaT
            has_gps=np.fromiter((row[5] for row in full), dtype=bool, count=len(full)),
        )

    def mask(self, filters: Filters) -> np.ndarray:
        """True for each row that passes `filters` (the test of `Filters.matches`)."""
        passing = self.known.copy()
        if (prefix := filters.path_prefix) is not None:
            under = [
                i for i, name in enumerate(self.folders) if name == prefix or name.startswith(prefix + "/")
            ]
            passing &= np.isin(self.folder, np.asarray(under, dtype=np.int32))
        if filters.taken_after is not None:
            passing &= self.taken_at >= np.datetime64(filters.taken_after, "s")
        if filters.taken_before is not None:
            passing &= self.taken_at <= np.datetime64(filters.taken_before, "s")
        if filters.formats is not None:
            kept = [i for i, name in enumerate(self.formats) if name in filters.formats]
            passing &= np.isin(self.format, np.asarray(kept, dtype=np.int32))
        if filters.min_width is not None:
            passing &= self.width >= filters.min_width
        if filters.min_height is not None:
            passing &= self.height >= filters.min_height
        if filters.has_gps is not None:
            passing &= self.has_gps == filters.has_gps
        return passing


def _codes(values: Sequence[V]) -> tuple[tuple[V, ...], np.ndarray]:
    """Distinct values and each value's index into them."""
    distinct: dict[V, int] = {}
    codes = np.fromiter(
        (distinct.setdefault(value, len(distinct)) for value in values), dtype=np.int32, count=len(values)
    )
    return tuple(distinct), codes


_columns: weakref.WeakKeyDictionary[Index, FilterColumns] = weakref.WeakKeyDictionary()
_columns_lock = threading.Lock()
SELECTIONS_KEPT = 8  # filters whose passing rows an opened index keeps (pages and new words under one filter)


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


_selections: weakref.WeakKeyDictionary[Index, OrderedDict[Filters, Selection]] = weakref.WeakKeyDictionary()


def filter_columns(index: Index) -> FilterColumns:
    """The index's filter columns, read from its catalog on first use (a generation never changes)."""
    require(index, "filtering")
    with _columns_lock:
        if index not in _columns:
            started = time.perf_counter()
            with index.manifest() as connection:
                _columns[index] = FilterColumns.load(connection)
            log.info("filter columns of %d images read in %.2fs", index.count, time.perf_counter() - started)
        return _columns[index]


def selection(index: Index, filters: Filters) -> Selection | None:
    """The rows that pass `filters` (None: no filter given, every row passes); the last
    SELECTIONS_KEPT filters' are kept, so paging or new words under one filter do not test 1 M rows again."""
    if filters.is_empty:
        return None
    columns = filter_columns(index)
    with _columns_lock:
        kept = _selections.setdefault(index, OrderedDict())
        found = kept.get(filters)
        if found is not None:
            kept.move_to_end(filters)
            return found
    found = Selection.of(columns.mask(filters))
    with _columns_lock:
        kept[filters] = found
        while len(kept) > SELECTIONS_KEPT:
            kept.popitem(last=False)
    return found


def allowed_rows(index: Index, filters: Filters) -> np.ndarray | None:
    """The sorted vector rows that pass `filters` (None: every row passes, no filter given)."""
    found = selection(index, filters)
    return None if found is None else found.rows


def metadata(index: Index, rows: Sequence[int]) -> dict[int, ImageMetadata]:
    """The stored metadata of the given vector rows (empty for an index without a catalog)."""
    if not rows or not has_catalog(index):
        return {}
    names = ", ".join(f"m.{name}" for name, _ in COLUMNS)
    found: dict[int, ImageMetadata] = {}
    with index.manifest() as connection:
        for first in range(0, len(rows), CHUNK):
            chunk = list(rows[first : first + CHUNK])
            marks = ", ".join("?" * len(chunk))
            sql = (
                f"SELECT i.row, {names} FROM images i JOIN {TABLE} m ON m.id = i.id WHERE i.row IN ({marks})"
            )
            for row, *values in connection.execute(sql, chunk):
                found[int(row)] = ImageMetadata.from_row(values)
    return found


def folders(index: Index) -> list[tuple[str, int]]:
    """Every folder that directly holds indexed images, with its image count, by name."""
    require(index, "the folder list")
    sql = f"SELECT folder, count(*) FROM {TABLE} GROUP BY folder ORDER BY folder"
    with index.manifest() as connection:
        return [(str(folder), int(count)) for folder, count in connection.execute(sql)]


class Passing:
    """The rows a filter lets through, as `row in passing` tests on its mask (no set of a million ints)."""

    def __init__(self, mask: np.ndarray) -> None:
        self._mask = mask

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < len(self._mask) and bool(self._mask[row])


# The lexical search's second table query runs here, on a connection of its own (`lexical.Beside`).
_BESIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lexical-grams")


def search_text(index: Index, text: str, limit: int, allowed: np.ndarray | None) -> list[LexicalHit]:
    """Rows whose name, folder or embedded text match `text`, best first (among `allowed`: a row mask)."""
    require(index, "matching file names and metadata (mode lexical)")

    def beside(read: Callable[[sqlite3.Connection], R]) -> Future[R] | None:
        """`read` on a spare manifest connection, in the pool; None when the index has none free."""
        other = index.spare()
        if other is None:
            return None

        def run() -> R:
            try:
                return read(other)
            finally:
                index.give_back(other)

        return _BESIDE.submit(run)

    with index.manifest() as connection:
        passing = None if allowed is None else Passing(allowed)
        return lexical.search(connection, text, limit, passing, beside)
