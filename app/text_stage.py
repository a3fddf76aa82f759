"""Build stage 4, text in pictures: read the text of each indexed picture that lacks it, then serve it.

Runs after the generation searched by meaning is published (app/build.py), under the same build lock,
so search by meaning is served as early as without it. The pictures whose text was never read (no
row in the manifest's `texts` table, app/catalog.py: new or changed files, or every file of an index
built with OCR off) are decoded again and read by a `TextReading` (app/ocr.py's `TextReader`) in
DataLoader worker processes (app/derived_stage.py, shared with the faces stage). Each read goes into a
derived generation (app/generations.py: the served one's files linked, its manifest copied): a `texts`
row (the text and its lines as JSON, "" when the picture holds none) and the `text` column of the
lexical tables (app/lexical.py). The derived generation is published at the end and every
`checkpoint_s` seconds on the way, so a stage that is interrupted (Ctrl-C, kill, a full disk) keeps
what it published and the next `--update` or watcher build reads only the rest. Vectors are never
touched: adding the text to an index re-encodes nothing. Both engines run this stage here, on the
build's machine (a Ray build runs it after its encode).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from app import catalog, lexical
from app.derived_stage import Pending, Reread, Stage, pending, read_again, run_stage, tally
from app.meta import BuildConfig
from app.ocr import ImageText
from app.preprocessing import decode
from app.sources import Source

log = logging.getLogger(__name__)

CHECKPOINT_S = 300.0  # a running stage publishes what it has read at least this often


class TextReading(Protocol):
    """What reads the text in a picture (app.ocr.TextReader; tests give fakes). Pickled to workers."""

    model_id: str

    def read(self, image: Image.Image) -> ImageText:
        """The picture's text, noise left out; empty when it holds none."""
        ...


TextRead = Reread[ImageText]  # a picture's text, or why it could not be read


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
    return read_again(pending, partial(decode, max_pixels=max_pixels), reader.read, "the reader failed on it")


def _lines(text: ImageText) -> str:
    """The lines read, as stored: text, confidence and box (fractions of the picture's size)."""
    return json.dumps(
        [{"text": line.text, "confidence": line.confidence, "box": line.box} for line in text.lines]
    )


def _write(connection: sqlite3.Connection, reads: list[TextRead], report: TextReport) -> None:
    """Store a batch of reads in the generation's manifest (texts table and lexical `text` column)."""
    done = [
        (read, read.value) for read in tally(reads, "text", report.seconds, "ocr") if read.value is not None
    ]
    connection.executemany(
        f"INSERT OR REPLACE INTO {catalog.TEXTS} VALUES (?, ?, ?)",
        [(read.id, text.text, _lines(text)) for read, text in done],
    )
    lexical.set_texts(connection, [(read.row, text.text) for read, text in done if text])
    report.read += len(done)
    report.with_text += sum(1 for _, text in done if text)
    report.unreadable += len(reads) - len(done)


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
    todo = pending(index_dir, source, catalog.TEXTS)
    if todo:
        stage = Stage[TextRead](
            desc="reading text",
            key="text",
            tables=(catalog.TEXTS_SQL,),
            write=partial(_write, report=report),
            report=report.to_json,
            seconds=report.seconds,
        )
        wait = CHECKPOINT_S if checkpoint_s is None else checkpoint_s
        read = partial(read_one, reader=reader, max_pixels=config.max_pixels)
        report.published = run_stage(index_dir, todo, read, stage, config.workers, wait, progress)
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
