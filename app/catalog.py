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
import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

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


def allowed_rows(index: Index, filters: Filters) -> np.ndarray | None:
    """The sorted vector rows that pass `filters` (None: every row passes, no filter given)."""
    if filters.is_empty:
        return None
    require(index, "filtering")
    condition, params = filters.where()
    sql = f"SELECT row FROM images WHERE id IN (SELECT id FROM {TABLE} WHERE {condition}) ORDER BY row"
    with index.manifest() as connection:
        found = [row for (row,) in connection.execute(sql, params)]
    return np.asarray(found, dtype=np.int64)


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


def search_text(index: Index, text: str, limit: int, allowed: np.ndarray | None) -> list[LexicalHit]:
    """Rows whose name, folder or embedded text match `text`, best first (among `allowed` rows)."""
    require(index, "matching file names and metadata (mode lexical)")
    rows = None if allowed is None else set(allowed.tolist())
    with index.manifest() as connection:
        return lexical.search(connection, text, limit, rows)
