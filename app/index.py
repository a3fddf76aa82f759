"""Stage 5: the index on disk (vectors by mmap, manifest, PCA, thumbnails, meta) and its searchers.

Layout: `<index_dir>/generations/<name>/` holds one complete build; `<index_dir>/current` (a
relative symlink, replaced atomically) names the one served. An index opened here holds a shared
`flock` on its generation's `readers.lock` until it is closed or garbage-collected, so a build
removes a generation only once no reader has it open. An older flat index (meta.json directly in
the folder) still opens.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.errors import ImageNotFound, IndexMismatch, IndexUnavailable
from app.layout import (
    BUILD_LOCK as BUILD_LOCK,
    CURRENT as CURRENT,
    FEATURES as FEATURES,
    GENERATIONS as GENERATIONS,
    MANIFEST as MANIFEST,
    META as META,
    ORIGINALS as ORIGINALS,
    PCA_FILE as PCA_FILE,
    READERS_LOCK as READERS_LOCK,
    REPORT as REPORT,
    THUMBNAILS as THUMBNAILS,
    VECTORS as VECTORS,
    generation_of as generation_of,
    live_path as live_path,
    looks_like_index as looks_like_index,
)
from app.meta import FORMAT_VERSION as FORMAT_VERSION, IndexMeta
from app.options import SearchOptions
from app.pca import Pca
from app.searchers import Space, open_searcher
from app.vectors import ExactSearcher, VectorSearcher

log = logging.getLogger(__name__)

PIN_ATTEMPTS = 10
CONNECTIONS = 4  # manifest connections per opened index: a hybrid request reads with up to three at once
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")

SCHEMA = """
CREATE TABLE images (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT,
    labels TEXT NOT NULL
);
"""


def _short(exc: Exception, root: Path) -> str:
    """An error reading an index, naming its file relative to the index folder."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        name = Path(exc.filename)
        return f"{exc.strerror}: {name.relative_to(root) if name.is_relative_to(root) else name}"
    return str(exc)


def _pin(index_dir: Path) -> tuple[Path, IO[bytes] | None]:
    """The live folder with a shared flock on its readers lock (None: flat index, nothing to pin)."""
    for _ in range(PIN_ATTEMPTS):
        path = live_path(index_dir)
        lock = path / READERS_LOCK
        try:
            handle = lock.open("rb")
        except OSError:
            if path.is_dir():
                return path, None
            continue  # a build removed that generation after `current` moved on: read the pointer again
        fcntl.flock(handle, fcntl.LOCK_SH)  # a build holds LOCK_EX only while it renames a generation away
        try:
            held, there = os.fstat(handle.fileno()), os.stat(lock)
            if (held.st_ino, held.st_dev) == (there.st_ino, there.st_dev):
                return path, handle
        except OSError:
            pass
        handle.close()
    return live_path(index_dir), None


def original_name(image_id: str, image_format: str | None) -> str:
    """Where an index that stores its originals (datasets) keeps one: `originals/<id>.<format>`."""
    return f"{ORIGINALS}/{image_id}.{(image_format or 'bin').lower()}"


def image_id(sha256: str) -> str:
    """Stable, url-safe id of an image: the first 16 hex digits of its content hash."""
    return sha256[:16]


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image as the manifest describes it."""

    row: int
    id: str
    source: str
    sha256: str
    width: int
    height: int
    format: str | None
    labels: list[tuple[str, float]]


def write_manifest(path: Path, records: list[ImageRecord]) -> None:
    """Create the SQLite manifest with one row per image, in vector order."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.row, r.id, r.source, r.sha256, r.width, r.height, r.format, json.dumps(r.labels))
                for r in records
            ],
        )
    # sqlite3's context manager commits but does not close.
    sqlite3.connect(path).close()


def _record(row: tuple[Any, ...]) -> ImageRecord:
    """Manifest row → record."""
    labels = [(str(label), float(score)) for label, score in json.loads(row[7])]
    return ImageRecord(int(row[0]), row[1], row[2], row[3], int(row[4]), int(row[5]), row[6], labels)


class Index:
    """A built index opened read-only: vectors memory-mapped, manifest in SQLite."""

    def __init__(self, path: Path, options: SearchOptions | None = None) -> None:
        self.root = path
        self.path, self._readers = _pin(path)
        try:
            self._open(self.path, options)
        except BaseException:
            self._close_readers()
            raise

    def _open(self, path: Path, options: SearchOptions | None) -> None:
        """Read meta.json, map the vectors, open the manifest and the searcher."""
        meta_path = path / META
        if not meta_path.is_file():
            raise IndexUnavailable(
                f"no index at {self.root} (missing {META}); "
                f"build one: imgsearch build --images FOLDER --index-dir {self.root}"
            )
        try:
            data = json.loads(meta_path.read_text())
            if data.get("format_version") != FORMAT_VERSION:
                raise IndexUnavailable(
                    f"index {path} has format version {data.get('format_version')}, "
                    f"this code reads {FORMAT_VERSION}; rebuild it"
                )
            self.meta = IndexMeta.from_json(data)
            # Copy-on-write maps: nothing writes to them, and torch can wrap them without a copy.
            self.vectors: np.ndarray = np.load(path / VECTORS, mmap_mode="c")
            features = path / FEATURES
            self.features: np.ndarray = (
                np.load(features, mmap_mode="c") if features.exists() else self.vectors
            )
            self.pca = Pca.load(path / PCA_FILE) if (path / PCA_FILE).exists() else None
            # Opened now, all of them: an open connection keeps reading a manifest whose file a
            # rebuild or a user removed meanwhile (the service goes on serving what it opened).
            uri = f"file:{path / MANIFEST}?mode=ro"
            self._connections = [
                sqlite3.connect(uri, uri=True, check_same_thread=False) for _ in range(CONNECTIONS)
            ]
            count = self._connections[0].execute("SELECT COUNT(*) FROM images").fetchone()[0]
        except (OSError, ValueError, sqlite3.Error, json.JSONDecodeError) as exc:
            reason = _short(exc, self.root)
            raise IndexUnavailable(f"index at {self.root} is incomplete or unreadable: {reason}") from exc
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._idle = list(self._connections)  # the manifest connections free now
        expected = self.meta.count
        if not (self.vectors.shape[0] == count == expected == self.features.shape[0]):
            raise IndexUnavailable(
                f"index at {path} is inconsistent: meta says {expected} images, manifest has {count}, "
                f"vectors has {self.vectors.shape[0]} rows"
            )
        root = self.meta.collection_root
        self.collection_root = Path(root) if root else path
        self.searcher: VectorSearcher = open_searcher(path, self.vectors, options or SearchOptions())
        self._feature_searcher = ExactSearcher(self.features)

    @property
    def generation(self) -> str | None:
        """Name of the generation open (None for a flat index)."""
        return self.path.name if self.path != self.root else None

    @property
    def count(self) -> int:
        """Number of indexed images."""
        return int(self.vectors.shape[0])

    @property
    def profile(self) -> str:
        """Model profile the index was built with."""
        return self.meta.profile

    @property
    def dim(self) -> int:
        """Dimension of the stored vectors."""
        return int(self.vectors.shape[1])

    def close(self) -> None:
        """Release the manifest connection, the searcher and the generation (a build may then remove it)."""
        with self._lock:
            for connection in self._connections:
                connection.close()
        self.searcher.close()
        self._close_readers()

    def _close_readers(self) -> None:
        """Drop the shared lock on the generation."""
        if self._readers is not None:
            self._readers.close()
            self._readers = None

    def check_compatible(self, profile: str, models: dict[str, str], text_dim: int) -> None:
        """Raise IndexMismatch naming both sides when the index was made by other models."""
        built = self.meta.models
        problems: list[str] = []
        if self.profile != profile:
            problems.append(f"profile: index {self.profile!r}, service {profile!r}")
        for role in ("image", "text"):
            if built.get(role) != models.get(role):
                problems.append(f"{role} model: index {built.get(role)!r}, service {models.get(role)!r}")
        input_dim = self.pca.input_dim if self.pca else self.dim
        if input_dim != text_dim:
            problems.append(f"text-space dimension: index {input_dim}, service {text_dim}")
        if problems:
            raise IndexMismatch(
                f"index at {self.path} does not match the loaded models — " + "; ".join(problems)
            )

    def get(self, image_id: str) -> ImageRecord:
        """Record of an indexed id; anything else (paths, junk) is ImageNotFound."""
        if not ID_PATTERN.fullmatch(image_id):
            raise ImageNotFound(f"no image with id {image_id[:64]!r}: ids are 16 hexadecimal digits")
        with self.manifest() as connection:
            row = connection.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(f"no image with id {image_id!r} in this index")
        return _record(row)

    def records(self, rows: list[int]) -> list[ImageRecord]:
        """Records at the given vector rows, in that order."""
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        with self.manifest() as connection:
            found = {
                r[0]: _record(r)
                for r in connection.execute(f"SELECT * FROM images WHERE row IN ({marks})", rows)
            }
        return [found[row] for row in rows]

    def label_mass(self, rows: list[int], labels: frozenset[str]) -> list[float]:
        """The summed stored probability of `labels` among each row's top labels, in the order of `rows`
        (what the class re-rank reads: SQLite sums inside the stored JSON, nothing is decoded in Python)."""
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        sql = (
            "SELECT i.row, (SELECT total(json_extract(j.value, '$[1]')) FROM json_each(i.labels) j "
            "WHERE json_extract(j.value, '$[0]') IN (SELECT value FROM json_each(?))) "
            f"FROM images i WHERE i.row IN ({marks})"
        )
        with self.manifest() as connection:
            found = dict(connection.execute(sql, [json.dumps(sorted(labels)), *rows]))
        return [float(found[row]) for row in rows]

    @contextmanager
    def manifest(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the manifest, this block's alone (waits while all are in use)."""
        with self._returned:
            while not self._idle:
                self._returned.wait()
            connection = self._idle.pop()
        try:
            yield connection
        finally:
            self.give_back(connection)

    def spare(self) -> sqlite3.Connection | None:
        """A free manifest connection for a read beside another one (a hybrid search's second table
        query), or None at once when all are in use: such a read never waits for one. `give_back` it."""
        with self._returned:
            return self._idle.pop() if self._idle else None

    def give_back(self, connection: sqlite3.Connection) -> None:
        """Return a connection that `manifest` or `spare` handed out."""
        with self._returned:
            self._idle.append(connection)
            self._returned.notify()

    def searcher_for(self, space: Space) -> VectorSearcher:
        """The searcher over the text-space vectors (text queries) or the visual features (images)."""
        return self.searcher if space == "text" else self._feature_searcher

    def original_path(self, record: ImageRecord) -> Path:
        """File of the original image; never outside the collection root."""
        root = self.collection_root.resolve()
        stored = self.meta.collection_root is None  # a dataset's images, copied into the index
        path = (root / (original_name(record.id, record.format) if stored else record.source)).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ImageNotFound(f"the original of image {record.id} is no longer available")
        return path

    def thumbnail_path(self, record: ImageRecord) -> Path:
        """File of the thumbnail."""
        path = self.path / THUMBNAILS / f"{record.id}.jpg"
        if not path.is_file():
            raise ImageNotFound(f"no thumbnail for image {record.id}")
        return path
