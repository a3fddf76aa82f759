"""Offline build: read (parallel decode) → encode (batched) → write a new generation → publish it →
read the text in the pictures that lack it (app/text_stage.py) → publish that as a derived generation.

The stages, each in its own module: `decoding` (one item → bytes, sha256, tensors, thumbnail),
`engines` (where reading and encoding run: `LocalEngine`'s DataLoader workers here, or
`app.build_ray.RayEngine`'s Ray actors), `writing` (the generation's files, meta.json last) and
`generations` (the index folder's ownership, build lock, generations, publishing and cleanup). This
module runs them in order with the lock held and says in one line what happened. Search by meaning
is served once the first generation is published, as early as without the text stage; the text
stage runs when `config.ocr` is on and a reader is given (the CLI and the watcher give app/ocr.py's
`TextReader`), on this machine for either engine, and says in its own line what it did.

The faces stage (app/face_stage.py, opt-in: `config.faces` and a `FaceReading`) runs after the text
stage the same way and groups the faces into people; `config.drop_faces` (`--no-faces`) serves the
index without them instead.

A failed or interrupted build leaves the served index as it was and removes what it wrote; a disk
that fills up is NoSpace, one line naming the index folder, however the write failed.

Incremental builds (`update=True`, `--update`): files whose sha256 is already in the index are not
decoded or encoded again; their vectors, features, labels and thumbnails are reused, files no
longer in the source drop out, new ones are encoded. Only an index built with the same profile,
models, bridge parameters, flip, label count and PCA settings is reused; otherwise the build falls
back to a full one and says why in one log line. With PCA, the index also keeps the unprojected
text-space vectors (`text_vectors.npy`) so that an update refits PCA on the union of old and new
vectors: an updated index equals a full rebuild up to float16 rounding. The text read in a reused
picture is carried over; OCR on or off is not a build setting: an index built without it gets the text
of its pictures from `--update` with OCR on, every vector reused. An interrupted text stage keeps the
text it published (it publishes every few minutes) and the next `--update` reads the rest.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from app.engines import Engine, LocalEngine
from app.errors import ImgSearchError, NoSpace
from app.face_stage import drop_faces, find_faces
from app.faces import FaceReading
from app.generations import check_index_dir, locked_index, new_generation, publish, remove_stale
from app.index import ImageRecord, Index
from app.layout import META, TEXT_VECTORS, THUMBNAILS, generation_of, live_path
from app.meta import BuildConfig, BuildSettings
from app.pipeline import Pipeline
from app.sources import Source
from app.text_stage import TextReading, read_texts
from app.writing import BuildReport, Previous, Run, out_of_space, write_generation

__all__ = ["BuildConfig", "BuildReport", "build_index"]  # the build's interface; the stages are their own

log = logging.getLogger(__name__)

RECORD_CHUNK = 10_000  # manifest rows read per query (SQLite caps the number of parameters)


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage after the first publication (text, faces): search by meaning is served, and the
    next update does the rest."""


def build_index(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig | None = None,
    progress: bool = True,
    update: bool = False,
    engine: Engine | None = None,
    reader: TextReading | None = None,
    faces: FaceReading | None = None,
) -> BuildReport:
    """Encode every image of `source` into a new generation of the index at `index_dir`, serve it, then
    read the text in its pictures with `reader` (when given and `config.ocr`) and serve that too, then
    find their faces with `faces` (when given and `config.faces`; `config.drop_faces` drops them).

    IndexDirRefused when `index_dir` is not ours to write (check_index_dir), BuildLocked when
    another build runs, NoSpace when the disk fills up, StageInterrupted on Ctrl-C once search by
    meaning is served. `engine` runs reading and encoding (default: LocalEngine); writing is the same
    for every engine. `update` reuses what the current generation holds, by sha256. Generations
    nothing reads any more are removed before and after.
    """
    check_index_dir(index_dir, source.root)
    index_dir, config = index_dir.resolve(), config or BuildConfig()
    try:
        with locked_index(index_dir):
            remove_stale(index_dir)
            previous = _reusable(index_dir, _settings_of(pipeline, config)) if update else None
            try:
                report = _build(
                    source, index_dir, pipeline, config, previous, engine or LocalEngine(), progress
                )
            finally:
                if previous is not None:
                    previous.close()
            remove_stale(index_dir)  # the generation served before, unless a service still reads it
            if config.ocr and reader is not None:
                _text_stage(source, index_dir, reader, config, progress, report)
            if config.drop_faces:
                drop_faces(index_dir)
            elif config.faces and faces is not None:
                _face_stage(source, index_dir, faces, config, progress, report)
            return report
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        if out_of_space(exc):
            raise _no_space(index_dir) from exc
        raise


def _build(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig,
    previous: Previous | None,
    engine: Engine,
    progress: bool,
) -> BuildReport:
    """The build itself, with the lock held: a new generation written whole, then published."""
    with new_generation(index_dir, source.stores_originals) as generation:
        run = Run(source, index_dir, generation, pipeline, config, previous, engine)
        report = write_generation(run, progress)
        publish(generation, index_dir)
    _log_report(report)
    return report


@contextmanager
def _stage(index_dir: Path, name: str, later: str) -> Iterator[None]:
    """Ctrl-C inside: StageInterrupted, saying what is served and what the next build does (`later`)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        raise StageInterrupted(
            f"the {name} stage stopped; search by meaning is served from {index_dir}, and {later}"
        ) from exc


def _text_stage(
    source: Source,
    index_dir: Path,
    reader: TextReading,
    config: BuildConfig,
    progress: bool,
    report: BuildReport,
) -> None:
    """Read the text of the pictures that lack it and serve it; its figures go to `report`."""
    later = "the text not yet read in pictures is read by the next build with --update"
    with _stage(index_dir, "text", later):
        texts = read_texts(index_dir, source, reader, config, progress)
    report.text_read, report.text_found = texts.read, texts.with_text
    report.seconds["text"] = texts.seconds["total"]


def _face_stage(
    source: Source,
    index_dir: Path,
    reader: FaceReading,
    config: BuildConfig,
    progress: bool,
    report: BuildReport,
) -> None:
    """Find the faces of the pictures not looked at yet and serve them; its figures go to `report`."""
    later = "the faces not yet found are found by the next build with --update --faces"
    with _stage(index_dir, "faces", later):
        found = find_faces(index_dir, source, reader, config, progress)
    report.faces_read, report.faces_found = found.read, found.faces
    report.seconds["faces"] = found.seconds["total"]


def _no_space(index_dir: Path) -> NoSpace:
    """The one line of a build that ran out of disk space (what it wrote is removed by then)."""
    kept = (
        "the index served was left as it was"
        if generation_of(index_dir) or (index_dir / META).is_file()
        else "no index was written"
    )
    return NoSpace(
        f"No space left on device: the build could not write the index at {index_dir}; {kept} "
        "(free some space and build again)"
    )


def _settings_of(pipeline: Pipeline, config: BuildConfig) -> BuildSettings:
    """Everything a stored vector, feature or label depends on, as this build would record it."""
    models = pipeline.models.ids()
    return BuildSettings(
        profile=pipeline.models.profile,
        image_model=models["image"],
        text_model=models["text"],
        bridge=pipeline.bridge.params,  # as applied (make_bridge may drop references)
        flip=pipeline.flip,
        text_dimension=pipeline.text_dim,
        label_count=config.label_k,
        pca_dim=config.pca_dim,
        pca_centred=config.pca_centred,
        label_model=models.get("labels", ""),
    )


def _reusable(index_dir: Path, wanted: BuildSettings) -> Previous | None:
    """The index in place when it can be reused; otherwise None, after one log line saying why."""
    if not (live_path(index_dir) / META).exists():
        log.info("--update: no index at %s yet; building all images", index_dir)
        return None
    try:
        index = Index(index_dir)
    except ImgSearchError as exc:
        log.warning("--update: the index in place cannot be read (%s); building all images", exc)
        return None
    differences = index.meta.build_settings().differences(wanted)
    text_path = index.path / TEXT_VECTORS
    if not differences and index.pca is not None and not text_path.exists():
        differences.append(f"the index has PCA but no {TEXT_VECTORS} (built before --update existed)")
    if differences:
        log.warning(
            "--update: the index at %s was built differently (%s); building all images",
            index_dir,
            "; ".join(differences),
        )
        index.close()
        return None
    try:
        return Previous(index, *_stored(index))
    except (OSError, ValueError) as exc:
        log.warning("--update: the index in place cannot be reused (%s); building all images", exc)
        index.close()
        return None


def _stored(index: Index) -> tuple[np.ndarray, dict[str, ImageRecord]]:
    """The index's text-space vectors and its records by sha256 (those whose thumbnail is there)."""
    text_vectors = (
        np.load(index.path / TEXT_VECTORS, mmap_mode="r") if index.pca is not None else index.vectors
    )
    records: dict[str, ImageRecord] = {}
    for first in range(0, index.count, RECORD_CHUNK):
        for record in index.records(list(range(first, min(first + RECORD_CHUNK, index.count)))):
            if (index.path / THUMBNAILS / f"{record.id}.jpg").is_file():
                records[record.sha256] = record
    return text_vectors, records


def _log_report(report: BuildReport) -> None:
    """One line: counts and seconds per stage."""
    log.info(
        "indexed %d images (%d reused, %d encoded, %d removed, %d skipped, %d duplicates) in %.1fs: %s",
        report.indexed,
        report.reused,
        report.encoded,
        report.removed,
        len(report.skipped),
        len(report.duplicates),
        report.seconds["total"],
        ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items() if k != "total"),
    )
