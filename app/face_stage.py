"""Build stage 5, faces (opt-in: `imgsearch build --faces`, IMGSEARCH_FACES): find the faces in each
indexed picture that was not looked at yet, group them into people, then serve them.

Like the text stage (app/text_stage.py), through the same machinery (app/derived_stage.py): it runs after
the generation searched by meaning is published (app/build.py), under the same build lock, so search by
meaning is served as early as without it. The pictures never looked at (no row in the manifest's
`faces_read` table, app/catalog.py: new or changed files, or every file of an index built without
`--faces`) are decoded again and read by a `FaceReading` (app/faces.py's `FaceReader`) in DataLoader
worker processes (`config.workers`). Each read goes into a derived generation (the served one's files
linked, its manifest copied): a `faces` row per face (box in the original picture's pixels, score, size,
descriptor) and a `faces_read` row per picture, faces or not. Before each derived generation is published
(at the end and every `checkpoint_s` seconds), its faces without a person are grouped (app/people.py
`assign`), so an interrupted stage keeps what it published and the next `--update` or watcher build reads
only the rest. Vectors are never touched: adding faces to an index re-encodes nothing. Both engines run
this stage here, on the build's machine.

`drop_faces` (`imgsearch build --no-faces`) publishes a derived generation without the faces tables
(the manifest rewritten, so no page of it keeps a descriptor) and deletes the people store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from app import catalog, people
from app.derived_stage import (
    REWRITE,
    Pending,
    Reread,
    Stage,
    add_to_report,
    pending,
    read_again,
    run_stage,
    tally,
)
from app.faces import FaceReading, FoundFace
from app.generations import derived_generation, publish, remove_stale
from app.layout import MANIFEST, PEOPLE, live_path
from app.meta import BuildConfig
from app.preprocessing import decode_sized
from app.sources import Source

log = logging.getLogger(__name__)

CHECKPOINT_S = 300.0  # a running stage publishes what it has found at least this often


FacesRead = Reread[list[FoundFace]]  # a picture's faces in the file's pixels, or why it could not be read


@dataclass
class FaceReport:
    """What the stage did: pictures read, those with faces, faces, unreadable ones, seconds per step."""

    read: int = 0
    with_faces: int = 0
    faces: int = 0
    unreadable: int = 0
    grouped: int = 0  # faces given a person
    published: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "read": self.read,
            "with_faces": self.with_faces,
            "faces": self.faces,
            "unreadable": self.unreadable,
            "grouped": self.grouped,
            "seconds": {key: round(value, 3) for key, value in self.seconds.items()},
        }


def _in_file_pixels(faces: list[FoundFace], factor: float, size: tuple[int, int]) -> list[FoundFace]:
    """The faces with their boxes scaled by `factor` into a picture of `size`, clipped to it."""
    scaled = []
    for face in faces:
        x, y, w, h = (round(value * factor) for value in face.box)
        x, y = min(max(0, x), size[0] - 1), min(max(0, y), size[1] - 1)
        box = (x, y, max(1, min(w, size[0] - x)), max(1, min(h, size[1] - y)))
        scaled.append(FoundFace(box, face.score, face.descriptor))
    return scaled


def read_one(pending: Pending, reader: FaceReading, max_pixels: int) -> FacesRead:
    """Decode one indexed picture again (the same bytes as indexed, else nothing) and find its faces."""

    def find(decoded: tuple[Image.Image, tuple[int, int]]) -> list[FoundFace]:
        image, size = decoded
        return _in_file_pixels(reader.read(image), max(size) / max(image.size), size)

    decode = partial(decode_sized, max_pixels=max_pixels, min_side=reader.decode_side, name=pending.path.name)
    return read_again(pending, decode, find, "the face reader failed on it")


def _write(connection: sqlite3.Connection, reads: list[FacesRead], report: FaceReport) -> None:
    """Store a batch of reads in the generation's manifest (faces and faces_read tables)."""
    done = [
        (read, read.value)
        for read in tally(reads, "faces", report.seconds, "faces")
        if read.value is not None
    ]
    connection.executemany(
        f"INSERT INTO {catalog.FACES} (id, x, y, w, h, score, size, descriptor) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (read.id, *face.box, face.score, face.size, face.descriptor.astype("<f4").tobytes())
            for read, faces in done
            for face in faces
        ],
    )
    connection.executemany(
        f"INSERT OR REPLACE INTO {catalog.FACES_READ} VALUES (?, ?)",
        [(read.id, len(faces)) for read, faces in done],
    )
    report.read += len(done)
    report.with_faces += sum(1 for _, faces in done if faces)
    report.faces += sum(len(faces) for _, faces in done)
    report.unreadable += len(reads) - len(done)


def _group(connection: sqlite3.Connection, index_dir: Path, report: FaceReport) -> None:
    """Give the faces of a generation about to be published their people (app/people.py)."""
    started = time.perf_counter()
    report.grouped += people.assign(index_dir, connection)
    report.seconds["group"] = report.seconds.get("group", 0.0) + time.perf_counter() - started


def find_faces(
    index_dir: Path,
    source: Source,
    reader: FaceReading,
    config: BuildConfig,
    progress: bool = True,
    checkpoint_s: float | None = None,
) -> FaceReport:
    """Find the faces of every served picture not looked at yet, group them and publish them (call with
    the build lock held, after the generation searched by meaning is published); nothing to read:
    nothing published."""
    started = time.perf_counter()
    report = FaceReport()
    todo = pending(index_dir, source, catalog.FACES_READ)
    if todo:
        stage = Stage[FacesRead](
            desc="finding faces",
            key="faces",
            tables=(catalog.FACES_SQL, catalog.FACES_READ_SQL),
            write=partial(_write, report=report),
            report=report.to_json,
            seconds=report.seconds,
            finish=partial(_group, index_dir=index_dir, report=report),
        )
        wait = CHECKPOINT_S if checkpoint_s is None else checkpoint_s
        read = partial(read_one, reader=reader, max_pixels=config.max_pixels)
        report.published = run_stage(index_dir, todo, read, stage, config.workers, wait, progress)
    report.seconds["total"] = time.perf_counter() - started
    _log(report, len(todo))
    return report


def drop_faces(index_dir: Path) -> bool:
    """Serve the index without its faces (a derived generation whose manifest holds none) and delete the
    people store (call with the build lock held); False when there was nothing to drop."""
    manifest = live_path(index_dir) / MANIFEST
    with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as connection:
        tables = (catalog.FACES, catalog.FACES_READ)
        held = [table for table in tables if catalog.has_table(connection, table)]
    store = index_dir / PEOPLE
    stored = store.is_file()
    if held:
        with derived_generation(index_dir, REWRITE) as generation:
            with closing(sqlite3.connect(generation / MANIFEST, isolation_level=None)) as connection:
                for table in held:
                    connection.execute(f"DROP TABLE {table}")
                connection.execute("VACUUM")  # rewrites the file: no free page keeps a descriptor
            add_to_report(generation, "faces", {"dropped": True})
            publish(generation, index_dir)
        remove_stale(index_dir)
    if stored:
        store.unlink()
    for suffix in ("-journal", "-wal", "-shm"):
        (index_dir / f"{PEOPLE}{suffix}").unlink(missing_ok=True)
    if held:
        log.info("faces dropped: the index served holds no face, and the people store was deleted")
    return bool(held) or stored


def _log(report: FaceReport, todo: int) -> None:
    """One line: counts and seconds per step (decoding and finding are summed over the workers)."""
    if not todo:
        log.info("faces: every picture was already looked at")
        return
    log.info(
        "found %d faces in %d of %d images (%d unreadable; %d given a person) in %.1fs: %s; %d generation(s) "
        "published",
        report.faces,
        report.with_faces,
        report.read,
        report.unreadable,
        report.grouped,
        report.seconds["total"],
        ", ".join(f"{key} {value:.1f}s" for key, value in report.seconds.items() if key != "total"),
        report.published,
    )
