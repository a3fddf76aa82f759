"""Build stage 3, writing: an engine's batches → one generation's files, meta.json last.

Collect (thumbnails and originals written as batches arrive, reused items linked from the previous
generation, rows gathered, duplicates and skips reported) → PCA fitted on the text-space vectors
when there are enough → `vectors.npy` (with the inverted file when asked), `features.npy`, the
manifest and its catalog tables → what each unnamed picture borrows from its named look-alikes
(app/propagation.py, stored in the manifest) → `build_report.json` → `meta.json`, whose absence marks a
generation that is not an index. File names come from app/layout.py; app/build.py publishes.

Every way a write fails for lack of space (ENOSPC or EDQUOT, SQLite's SQLITE_FULL, faiss's write
error) is recognised by `out_of_space`; arrays are written through Python so that a full disk is
ENOSPC there too, not numpy's `N requested and M written`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from app import catalog
from app.decoding import DecodedItem, Failed, Fresh, Reused
from app.engines import Engine
from app.errors import ImgSearchError
from app.generations import link_or_copy
from app.index import ImageRecord, Index, image_id, original_name, write_manifest
from app.layout import (
    ANN_FILE,
    FEATURES,
    MANIFEST,
    META,
    PCA_FILE,
    REPORT,
    TEXT_VECTORS,
    THUMBNAILS,
    VECTORS,
    generation_of,
)
from app.meta import BuildConfig, BuildInfo, Dims, IndexMeta, PcaInfo
from app.pca import Pca
from app.pipeline import Encoded, Pipeline
from app.sources import Source
from app.vectors import build_ann

log = logging.getLogger(__name__)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class BuildReport:
    """What a build did: counts, skipped files with reasons, seconds per stage."""

    indexed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per format skipped for want of its plugin
    duplicates: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    reused: int = 0
    encoded: int = 0
    removed: int = 0
    text_read: int = 0  # pictures whose text the text stage read (app/text_stage.py)
    text_found: int = 0  # of those, pictures holding text
    faces_read: int = 0  # pictures the faces stage looked at (app/face_stage.py)
    faces_found: int = 0  # faces it found in them

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "indexed": self.indexed,
            "reused": self.reused,
            "encoded": self.encoded,
            "removed": self.removed,
            "skipped": self.skipped,
            "notes": self.notes,
            "duplicates": self.duplicates,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass
class Previous:
    """An earlier index of the same settings: what can be reused, by sha256 (app/build.py opens it)."""

    index: Index
    text_vectors: np.ndarray
    records: dict[str, ImageRecord]

    def close(self) -> None:
        """Release the index."""
        self.index.close()


@dataclass(frozen=True)
class Run:
    """One build's fixed inputs, shared by its stages."""

    source: Source
    index_dir: Path
    generation: Path
    pipeline: Pipeline
    config: BuildConfig
    previous: Previous | None
    engine: Engine


@dataclass(frozen=True)
class _Encoding:
    """What the index stores of one image besides its files: vectors, size, format, labels."""

    vector: np.ndarray  # text space, before PCA
    feature: np.ndarray
    width: int
    height: int
    format: str | None
    labels: list[tuple[str, float]]


@dataclass
class _Collected:
    """The images to index, in row order, and the ids met so far (for duplicates)."""

    vectors: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    records: list[ImageRecord] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # id → source of its first copy


def write_generation(run: Run, progress: bool) -> BuildReport:
    """Write the whole generation: collect → project → arrays → report → meta.json (last)."""
    report = BuildReport()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    collected = _collect(run, report, timings, progress)
    matrix, pca = _write_arrays(run, collected, timings)
    _write_lending(run.generation, timings)
    report.indexed = len(collected.records)
    timings["total"] = time.perf_counter() - started
    report.seconds = timings
    meta = _meta(run, int(matrix.shape[1]), int(collected.features[0].shape[0]), report.indexed, pca)
    (run.generation / REPORT).write_text(json.dumps(report.to_json(), indent=2))
    # meta.json last: a generation without it is not an index
    (run.generation / META).write_text(json.dumps(meta.to_json(), indent=2))
    return report


def _reused(item: Reused, previous: Previous | None) -> _Encoding:
    """A reused item's stored vectors and manifest fields."""
    assert previous is not None
    old = previous.records[item.sha256]
    return _Encoding(
        vector=np.asarray(previous.text_vectors[old.row], dtype=np.float32),
        feature=np.asarray(previous.index.features[old.row], dtype=np.float32),
        width=old.width,
        height=old.height,
        format=old.format,
        labels=old.labels,
    )


def _fresh(item: Fresh, encoded: Encoded | None, position: int) -> _Encoding:
    """A fresh item's row of its batch's Encoded."""
    assert encoded is not None
    return _Encoding(
        vector=encoded.vectors[position],
        feature=encoded.features[position],
        width=item.width,
        height=item.height,
        format=item.format,
        labels=encoded.labels[position],
    )


def _store_files(
    item: Reused | Fresh, image: str, fmt: str | None, generation: Path, previous: Previous | None
) -> None:
    """Write the item's thumbnail (linked when reused) and original."""
    if item.original is not None:
        (generation / original_name(image, fmt)).write_bytes(item.original)
    thumb = generation / THUMBNAILS / f"{image}.jpg"
    if isinstance(item, Reused):
        assert previous is not None
        link_or_copy(previous.index.path / THUMBNAILS / f"{image}.jpg", thumb)
    else:
        thumb.write_bytes(item.thumbnail)


def _take(
    batch: list[DecodedItem], encoded: Encoded | None, run: Run, collected: _Collected, report: BuildReport
) -> None:
    """Add one batch's items to `collected` (skips and duplicates to `report`), writing their files."""
    position = 0
    for item in batch:
        if isinstance(item, Failed):
            report.skipped.append({"source": item.source, "reason": item.error})
            continue
        if isinstance(item, Reused):
            encoding = _reused(item, run.previous)
        else:
            encoding = _fresh(item, encoded, position)
            position += 1
        image = image_id(item.sha256)
        if image in collected.seen:
            report.duplicates.append({"source": item.source, "same_as": collected.seen[image]})
            continue
        collected.seen[image] = item.source
        _store_files(item, image, encoding.format, run.generation, run.previous)
        if isinstance(item, Reused):
            report.reused += 1
        else:
            report.encoded += 1
        collected.records.append(
            ImageRecord(
                row=len(collected.records),
                id=image,
                source=item.source,  # a file's path, or a dataset's `name[split]#row`
                sha256=item.sha256,
                width=encoding.width,
                height=encoding.height,
                format=encoding.format,
                labels=encoding.labels,
            )
        )
        collected.vectors.append(encoding.vector)
        collected.features.append(encoding.feature)


def _collect(run: Run, report: BuildReport, timings: dict[str, float], progress: bool) -> _Collected:
    """The engine's batches in, thumbnails and originals written, rows gathered."""
    previous = run.previous
    known = frozenset(previous.records) if previous is not None else frozenset()
    collected = _Collected()
    _report_unreadable(run.source, report)
    with (
        tqdm(
            total=len(run.source), desc=f"indexing ({run.engine.name})", unit="img", disable=not progress
        ) as bar,
        closing(run.engine.batches(run.source, run.pipeline, run.config, known, timings)) as batches,
    ):
        for encoded, batch in batches:
            after_encode = time.perf_counter()
            _take(batch, encoded, run, collected, report)
            bar.update(len(batch))
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - after_encode
    if not collected.records:
        raise _nothing_to_index(run.source, report, run.index_dir)
    if previous is not None:
        report.removed = len(set(previous.records) - {r.sha256 for r in collected.records})
    return collected


def _report_unreadable(source: Source, report: BuildReport) -> None:
    """Each file whose format's plugin is missing as a skip, and one line per format, logged once."""
    counts: dict[tuple[str, str], int] = {}
    for file in source.unreadable:
        report.skipped.append({"source": file.source, "reason": file.reason, "missing": file.format})
        counts[(file.format, file.reason)] = counts.get((file.format, file.reason), 0) + 1
    for (fmt, reason), count in counts.items():
        report.notes.append(f"{_plural(count, fmt + ' file')} skipped: {reason}")
        log.warning("%s", report.notes[-1])


def _plural(count: int, noun: str) -> str:
    """`1 image`, `11 images`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def pca_skipped(count: int, dims: int, pca_dim: int) -> str:
    """Why PCA to `pca_dim` dimensions was not applied, in one line."""
    if dims <= pca_dim:
        return (
            f"PCA skipped: the vectors have {_plural(dims, 'dimension')}, not more than --pca-dim {pca_dim}"
        )
    return (
        f"PCA skipped: {_plural(count, 'image')}, and PCA to {pca_dim} dimensions needs more than "
        f"{_plural(pca_dim, 'image')}; vectors kept at {dims} dimensions"
    )


def _nothing_to_index(source: Source, report: BuildReport, index_dir: Path) -> ImgSearchError:
    """The error of a build that found no readable image (saying whether an index stays served)."""
    where = getattr(source, "root", None) or "the source"
    kept = (
        "; the existing index was left as it was"
        if generation_of(index_dir) or (index_dir / META).is_file()
        else "; no index was written"
    )
    return ImgSearchError(f"no readable images in {where} ({len(report.skipped)} skipped){kept}")


def _project(raw: np.ndarray, config: BuildConfig, generation: Path) -> tuple[np.ndarray, Pca | None]:
    """Fit PCA on the text-space vectors when there are enough, keeping them for updates."""
    if config.pca_dim and raw.shape[0] > config.pca_dim and config.pca_dim < raw.shape[1]:
        pca = Pca.fit(raw, config.pca_dim, centred=config.pca_centred)
        pca.save(generation / PCA_FILE)
        save_array(generation / TEXT_VECTORS, raw.astype(np.float16))
        return pca.transform(raw), pca
    if config.pca_dim:
        log.info("%s", pca_skipped(raw.shape[0], raw.shape[1], config.pca_dim))
    return raw, None


def _write_arrays(
    run: Run, collected: _Collected, timings: dict[str, float]
) -> tuple[np.ndarray, Pca | None]:
    """Project, then write vectors, the ANN file, features, the manifest and its catalog tables."""
    started = time.perf_counter()
    matrix, pca = _project(np.stack(collected.vectors).astype(np.float32), run.config, run.generation)
    timings["pca"] = time.perf_counter() - started
    stored = matrix.astype(np.float16)
    save_array(run.generation / VECTORS, stored)
    ann = run.config.ann
    if ann == "always" or (ann == "auto" and stored.shape[0] >= run.config.ann_min):
        timings["ann"] = build_ann(stored, run.generation / ANN_FILE)
    save_array(run.generation / FEATURES, np.stack(collected.features).astype(np.float16))
    write_manifest(run.generation / MANIFEST, collected.records)
    previous = run.previous.index.path / MANIFEST if run.previous is not None else None
    catalog.write(run.generation / MANIFEST, collected.records, run.source, run.generation, previous)
    timings["write"] += time.perf_counter() - started - timings["pca"] - timings.get("ann", 0.0)
    return matrix, pca


def _write_lending(generation: Path, timings: dict[str, float]) -> None:
    """Store what each picture borrows from its named look-alikes (app/propagation.py), computed from the
    features as written (float16, as the service reads them) and the catalog just written."""
    started = time.perf_counter()
    lent = catalog.write_lending(generation / MANIFEST, np.load(generation / FEATURES, mmap_mode="r"))
    timings["propagation"] = time.perf_counter() - started
    log.info("%d unnamed images borrow words from named look-alikes (%.2fs)", lent, timings["propagation"])


def _meta(run: Run, vector_dim: int, feature_dim: int, count: int, pca: Pca | None) -> IndexMeta:
    """What meta.json records of this build."""
    pipeline, config, source = run.pipeline, run.config, run.source
    return IndexMeta(
        profile=pipeline.models.profile,
        models=pipeline.models.ids(),
        precision=pipeline.models.image.precision,
        dims=Dims(vector=vector_dim, text=pipeline.text_dim, feature=feature_dim),
        count=count,
        bridge=pipeline.bridge.params,
        flip=pipeline.flip,
        pca=PcaInfo(pca.dim, pca.centred) if pca else None,
        collection_root=None if source.stores_originals else str(source.root),
        source=getattr(source, "name", None) or str(source.root),
        build=BuildInfo(
            batch_size=config.batch_size,
            workers=config.workers,
            pca_dim=config.pca_dim,
            pca_centred=config.pca_centred,
            label_k=config.label_k,
            ann=(run.generation / ANN_FILE).is_file(),
            update=run.previous is not None,
            engine=run.engine.name,
        ),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_id=uuid.uuid4().hex,  # names this build's Milvus collection (app/milvus.py)
    )


class _Stream:
    """An open file that numpy takes for a plain stream, so it writes through Python, whose errors
    carry their errno (its own path on a real file reports a full disk as `N requested and M written`)."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def write(self, data: bytes) -> int:
        """Write through the file object."""
        return self._file.write(data)


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save's bytes, written so that a full disk is ENOSPC (see _Stream)."""
    with path.open("wb") as file:
        np.save(_Stream(file), array)


def out_of_space(exc: BaseException) -> bool:
    """True when a write failed for lack of space: ENOSPC or EDQUOT, SQLite's SQLITE_FULL, or faiss's
    write error (a RuntimeError naming the system's reason)."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if isinstance(exc, RuntimeError):
        return any(os.strerror(code) in str(exc) for code in NO_SPACE)
    return False
