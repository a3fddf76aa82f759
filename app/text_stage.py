"""Build stage 4, text in pictures: read the text of each indexed picture that lacks it, then serve it.

Runs after the generation searched by meaning is published (app/build.py), under the same build lock,
so search by meaning is served as early as without it. The pictures whose text was never read (no
row in the manifest's `texts` table, app/catalog.py: new or changed files, or every file of an index
built with OCR off) are decoded again and read by a `TextReading` (app/ocr.py's `TextReader`) in
DataLoader worker processes (`config.workers`; the decode workers' rules of app/engines.py: they die
with the build and drop its lock). Each read goes into a derived generation (app/generations.py: the
served one's files linked, its manifest copied): a `texts` row (the text and its lines as JSON, "" when
the picture holds none) and the `text` column of the lexical tables (app/lexical.py). The derived
generation is published at the end and every `checkpoint_s` seconds on the way, so a stage that is
interrupted (Ctrl-C, kill, a full disk) keeps what it published and the next `--update` or watcher
build reads only the rest. Vectors are never touched: adding the text to an index re-encodes nothing.
Both engines run this stage here, on the build's machine (a Ray build runs it after its encode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app import catalog, lexical
from app.engines import worker_started
from app.errors import ImgSearchError
from app.generations import derived_generation, publish, remove_stale
from app.index import original_name
from app.layout import CURRENT, MANIFEST, REPORT, live_path
from app.meta import BuildConfig
from app.ocr import ImageText
from app.preprocessing import decode
from app.sources import Source

log = logging.getLogger(__name__)

CHECKPOINT_S = 300.0  # a running stage publishes what it has read at least this often
REWRITE = (MANIFEST, REPORT)  # the files a derived generation of this stage changes


class TextReading(Protocol):
    """What reads the text in a picture (app.ocr.TextReader; tests give fakes). Pickled to workers."""

    model_id: str

    def read(self, image: Image.Image) -> ImageText:
        """The picture's text, noise left out; empty when it holds none."""
        ...


@dataclass(frozen=True)
class Pending:
    """A picture whose text is to be read: its row, id, content hash and file."""

    row: int
    id: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class TextRead:
    """What reading one picture gave: its text (None when the file could not be read again)."""

    row: int
    id: str
    text: ImageText | None
    reason: str = ""
    seconds: tuple[float, float] = (0.0, 0.0)  # decoding, reading


@dataclass
class TextReport:
    """What the stage did: pictures read, those with text, those it could not read, seconds per step."""

    read: int = 0
    with_text: int = 0
    unreadable: int = 0
    published: int = 0  # generations published (checkpoints and the last)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "read": self.read,
            "with_text": self.with_text,
            "unreadable": self.unreadable,
            "seconds": {key: round(value, 3) for key, value in self.seconds.items()},
        }


def read_one(pending: Pending, reader: TextReading, max_pixels: int) -> TextRead:
    """Decode one indexed picture again (the same bytes as indexed, else nothing) and read its text."""
    started = time.perf_counter()
    try:
        raw = pending.path.read_bytes()
    except OSError as exc:
        return TextRead(pending.row, pending.id, None, f"cannot read file: {exc.strerror or exc}")
    if hashlib.sha256(raw).hexdigest() != pending.sha256:
        return TextRead(pending.row, pending.id, None, "changed since it was indexed")
    try:
        image = decode(raw, max_pixels)
    except ImgSearchError as exc:
        return TextRead(pending.row, pending.id, None, str(exc))
    decoded = time.perf_counter()
    try:
        text = reader.read(image)
    except ImgSearchError:  # the networks are missing: the stage cannot go on
        raise
    except Exception as exc:  # one picture the reader fails on costs its text, not the stage
        return TextRead(pending.row, pending.id, None, f"the reader failed on it: {exc!r}")
    return TextRead(pending.row, pending.id, text, seconds=(decoded - started, time.perf_counter() - decoded))


class PendingReads(Dataset[TextRead]):
    """Worker-side reads of the pending pictures (see read_one)."""

    def __init__(self, pending: list[Pending], reader: TextReading, max_pixels: int) -> None:
        self.pending, self.reader, self.max_pixels = pending, reader, max_pixels

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, i: int) -> TextRead:
        return read_one(self.pending[i], self.reader, self.max_pixels)


def pending(index_dir: Path, source: Source) -> list[Pending]:
    """The served pictures whose text was never read, in row order."""
    manifest = live_path(index_dir) / MANIFEST
    with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as connection:
        sql = "SELECT row, id, source, sha256, format FROM images"
        if catalog.has_texts(connection):
            sql += f" WHERE id NOT IN (SELECT id FROM {catalog.TEXTS})"
        rows = connection.execute(sql + " ORDER BY row").fetchall()
    found: list[Pending] = []
    for row, image, name, sha256, fmt in rows:
        if source.stores_originals or source.root is None:  # read through `current`, whichever it names
            path = index_dir / CURRENT / original_name(image, fmt)
        else:
            path = source.root / name
        found.append(Pending(int(row), str(image), str(sha256), path))
    return found


def _lines(text: ImageText) -> str:
    """The lines read, as stored: text, confidence and box (fractions of the picture's size)."""
    return json.dumps(
        [{"text": line.text, "confidence": line.confidence, "box": line.box} for line in text.lines]
    )


def _write(connection: sqlite3.Connection, reads: list[TextRead], report: TextReport) -> None:
    """Store a batch of reads in the generation's manifest (texts table and lexical `text` column)."""
    done = [read for read in reads if read.text is not None]
    for read in reads:
        if read.text is None:
            log.warning("text of image %s not read: %s (the next --update tries again)", read.id, read.reason)
    connection.executemany(
        f"INSERT OR REPLACE INTO {catalog.TEXTS} VALUES (?, ?, ?)",
        [(read.id, read.text.text, _lines(read.text)) for read in done if read.text is not None],
    )
    lexical.set_texts(connection, [(read.row, read.text.text) for read in done if read.text])
    report.read += len(done)
    report.with_text += sum(1 for read in done if read.text)
    report.unreadable += len(reads) - len(done)
    report.seconds["decode"] = report.seconds.get("decode", 0.0) + sum(read.seconds[0] for read in reads)
    report.seconds["ocr"] = report.seconds.get("ocr", 0.0) + sum(read.seconds[1] for read in reads)


def _add_to_report(generation: Path, report: TextReport) -> None:
    """Record the stage's figures in the generation's build_report.json."""
    path = generation / REPORT
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored["text"] = report.to_json()
    path.write_text(json.dumps(stored, indent=2))


def _checkpoint(
    index_dir: Path,
    first: list[TextRead],
    reads: Iterator[list[TextRead]],
    report: TextReport,
    bar: tqdm[Any],
    checkpoint_s: float,
) -> None:
    """Write `first` and the reads after it into one derived generation until `checkpoint_s` passes or
    the reads run out, then publish it."""
    deadline = time.perf_counter() + checkpoint_s
    with derived_generation(index_dir, REWRITE) as generation:
        with closing(sqlite3.connect(generation / MANIFEST)) as connection:
            connection.execute(catalog.TEXTS_SQL)
            batch: list[TextRead] | None = first
            while batch is not None:
                started = time.perf_counter()
                with connection:
                    _write(connection, batch, report)
                report.seconds["write"] = report.seconds.get("write", 0.0) + time.perf_counter() - started
                bar.update(len(batch))
                batch = next(reads, None) if started < deadline else None
        _add_to_report(generation, report)
        publish(generation, index_dir)
    report.published += 1
    remove_stale(index_dir)  # the generation this one replaced, unless a service still reads it


def read_texts(
    index_dir: Path,
    source: Source,
    reader: TextReading,
    config: BuildConfig,
    progress: bool = True,
    checkpoint_s: float | None = None,
) -> TextReport:
    """Read the text of every served picture that lacks it and publish it (call with the build lock
    held, after the generation searched by meaning is published); nothing to read: nothing published."""
    started = time.perf_counter()
    report = TextReport()
    todo = pending(index_dir, source)
    if todo:
        loader = DataLoader(
            PendingReads(todo, reader, config.max_pixels),
            batch_size=4,
            num_workers=config.workers,
            collate_fn=list,
            worker_init_fn=partial(worker_started, parent=os.getpid()) if config.workers else None,
        )
        reads = iter(loader)
        try:
            with tqdm(total=len(todo), desc="reading text", unit="img", disable=not progress) as bar:
                while (batch := next(reads, None)) is not None:
                    _checkpoint(
                        index_dir,
                        batch,
                        reads,
                        report,
                        bar,
                        CHECKPOINT_S if checkpoint_s is None else checkpoint_s,
                    )
        finally:
            del reads  # stops the workers now (app/engines.py does the same)
    report.seconds["total"] = time.perf_counter() - started
    _log(report, len(todo))
    return report


def _log(report: TextReport, todo: int) -> None:
    """One line: counts and seconds per step (decoding and reading are summed over the workers)."""
    if not todo:
        log.info("text in pictures: every picture's text was already read")
        return
    log.info(
        "read the text of %d images (%d with text, %d unreadable) in %.1fs: %s; %d generation(s) published",
        report.read,
        report.with_text,
        report.unreadable,
        report.seconds["total"],
        ", ".join(f"{key} {value:.1f}s" for key, value in report.seconds.items() if key != "total"),
        report.published,
    )
