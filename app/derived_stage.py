"""Build stages that add to a published index (text in pictures, faces): what is left to read, the reads.

A stage of this kind (app/text_stage.py, app/face_stage.py) runs after the generation searched by meaning
is published, under the same build lock. `pending` lists the served pictures it has not read yet (no row
in the stage's own table of the manifest); `run_stage` decodes and reads them again in DataLoader worker
processes (`config.workers`; the decode workers' rules of app/engines.py: they die with the build and drop
its lock) and writes them into derived generations (app/generations.py: the served one's files linked, its
manifest copied), each published when `checkpoint_s` seconds have passed and at the end, so a stage that is
interrupted keeps what it published and the next build reads only the rest. Vectors are never touched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app import catalog
from app.engines import worker_started
from app.errors import ImgSearchError
from app.generations import derived_generation, publish, remove_stale
from app.index import original_name
from app.layout import CURRENT, MANIFEST, REPORT, live_path
from app.sources import Source

log = logging.getLogger(__name__)

REWRITE = (MANIFEST, REPORT)  # the files a derived generation of such a stage changes
BATCH = 4  # pictures per worker batch

R = TypeVar("R")
D = TypeVar("D")
V = TypeVar("V")


@dataclass(frozen=True)
class Pending:
    """A picture still to be read by a stage: its row, id, content hash and file."""

    row: int
    id: str
    sha256: str
    path: Path


def pending(index_dir: Path, source: Source, done_table: str) -> list[Pending]:
    """The served pictures with no row in `done_table` (all of them when it does not exist), in row order."""
    manifest = live_path(index_dir) / MANIFEST
    with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as connection:
        sql = "SELECT row, id, source, sha256, format FROM images"
        if catalog.has_table(connection, done_table):
            sql += f" WHERE id NOT IN (SELECT id FROM {done_table})"
        rows = connection.execute(sql + " ORDER BY row").fetchall()
    found: list[Pending] = []
    for row, image, name, sha256, fmt in rows:
        if source.stores_originals or source.root is None:  # read through `current`, whichever it names
            path = index_dir / CURRENT / original_name(image, fmt)
        else:
            path = source.root / name
        found.append(Pending(int(row), str(image), str(sha256), path))
    return found


def indexed_bytes(pending: Pending) -> bytes | str:
    """The picture's bytes when they are still those indexed; else why not (a reason, for the log)."""
    try:
        raw = pending.path.read_bytes()
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if hashlib.sha256(raw).hexdigest() != pending.sha256:
        return "changed since it was indexed"
    return raw


@dataclass(frozen=True)
class Reread(Generic[V]):
    """What reading one indexed picture again gave: `value` (None when it could not be read, and why)."""

    row: int
    id: str
    value: V | None
    reason: str = ""
    seconds: tuple[float, float] = (0.0, 0.0)  # decoding, reading


def read_again(
    pending: Pending, decode: Callable[[bytes], D], read: Callable[[D], V], failed: str
) -> Reread[V]:
    """Decode one indexed picture again (the same bytes as indexed, else nothing) and read it; an
    ImgSearchError of `read` (its models are missing) stops the stage, any other failure costs this
    picture only (`failed`: what the reason says then)."""
    started = time.perf_counter()
    raw = indexed_bytes(pending)
    if isinstance(raw, str):
        return Reread(pending.row, pending.id, None, raw)
    try:
        decoded = decode(raw)
    except ImgSearchError as exc:
        return Reread(pending.row, pending.id, None, str(exc))
    middle = time.perf_counter()
    try:
        value = read(decoded)
    except ImgSearchError:
        raise
    except Exception as exc:
        return Reread(pending.row, pending.id, None, f"{failed}: {exc!r}")
    return Reread(pending.row, pending.id, value, seconds=(middle - started, time.perf_counter() - middle))


def tally(reads: list[Reread[V]], what: str, seconds: dict[str, float], step: str) -> list[Reread[V]]:
    """The reads that gave a value; each that did not is logged (`what` of the picture), and the
    seconds spent decoding and reading are added up under "decode" and `step`."""
    for read in reads:
        if read.value is None:
            log.warning(
                "%s of image %s not read: %s (the next --update tries again)", what, read.id, read.reason
            )
    seconds["decode"] = seconds.get("decode", 0.0) + sum(read.seconds[0] for read in reads)
    seconds[step] = seconds.get(step, 0.0) + sum(read.seconds[1] for read in reads)
    return [read for read in reads if read.value is not None]


class PendingReads(Dataset[R]):
    """Worker-side reads of the pending pictures (`read` is pickled to the workers)."""

    def __init__(self, pending: list[Pending], read: Callable[[Pending], R]) -> None:
        self.pending, self.read = pending, read

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, i: int) -> R:
        return self.read(self.pending[i])


@dataclass
class Stage(Generic[R]):
    """What one stage does with its reads inside each derived generation it publishes."""

    desc: str  # its progress bar's label
    key: str  # its entry in build_report.json
    tables: tuple[str, ...]  # the SQL that creates its tables in the generation's manifest
    write: Callable[[sqlite3.Connection, list[R]], None]  # stores a batch of reads
    report: Callable[[], dict[str, Any]]  # its figures so far, JSON-ready
    seconds: dict[str, float]  # where the time spent writing is added up ("write")
    finish: Callable[[sqlite3.Connection], None] | None = None  # runs before each publication


def add_to_report(generation: Path, key: str, value: dict[str, Any]) -> None:
    """Record a stage's figures under `key` in the generation's build_report.json."""
    path = generation / REPORT
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[key] = value
    path.write_text(json.dumps(stored, indent=2))


def run_stage(
    index_dir: Path,
    todo: list[Pending],
    read: Callable[[Pending], R],
    stage: Stage[R],
    workers: int,
    checkpoint_s: float,
    progress: bool = True,
) -> int:
    """Read `todo` in worker processes and publish the reads (call with the build lock held); the number
    of generations published."""
    loader = DataLoader(
        PendingReads(todo, read),
        batch_size=BATCH,
        num_workers=workers,
        collate_fn=list,
        worker_init_fn=partial(worker_started, parent=os.getpid()) if workers else None,
    )
    reads = iter(loader)
    published = 0
    try:
        with tqdm(total=len(todo), desc=stage.desc, unit="img", disable=not progress) as bar:
            while (batch := next(reads, None)) is not None:
                _checkpoint(index_dir, batch, reads, stage, bar, checkpoint_s)
                published += 1
    finally:
        del reads  # stops the workers now (app/engines.py does the same)
    return published


def _checkpoint(
    index_dir: Path,
    first: list[R],
    reads: Iterator[list[R]],
    stage: Stage[R],
    bar: tqdm[Any],
    checkpoint_s: float,
) -> None:
    """Write `first` and the reads after it into one derived generation until `checkpoint_s` passes or
    the reads run out, then publish it."""
    deadline = time.perf_counter() + checkpoint_s
    with derived_generation(index_dir, REWRITE) as generation:
        with closing(sqlite3.connect(generation / MANIFEST)) as connection:
            for sql in stage.tables:
                connection.execute(sql)
            batch: list[R] | None = first
            while batch is not None:
                started = time.perf_counter()
                with connection:
                    stage.write(connection, batch)
                stage.seconds["write"] = stage.seconds.get("write", 0.0) + time.perf_counter() - started
                bar.update(len(batch))
                batch = next(reads, None) if started < deadline else None
            if stage.finish is not None:
                stage.finish(connection)
        add_to_report(generation, stage.key, stage.report())
        publish(generation, index_dir)
    remove_stale(index_dir)  # the generation this one replaced, unless a service still reads it
