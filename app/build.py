"""Offline build: read (parallel decode) → encode (batched) → write (a new generation, switched to at once).

Reading and encoding run in an engine: `LocalEngine` (DataLoader workers on this machine) or
`app.build_ray.RayEngine` (an actor pool on a Ray cluster). Both feed the one write stage below.

The index folder is the project's alone: a build writes only into a new or empty folder or one
holding an index it made, never into or around the images folder (IndexDirRefused otherwise), and
deletes only names it writes.

Crash safety: a build writes a new generation, `<index_dir>/generations/<UTC time>-<random>/`, and
serves it by replacing the symlink `<index_dir>/current` in one rename, so a build killed at any
point leaves the current generation complete and loadable, and a running service always reads one
whole generation (app/index.py; it follows `current` by itself, app/api/runtime.py). Generations no
longer current are deleted by the next build once no reader holds their `readers.lock`; a running
service keeps the ones it still reads. One build at a time per index: an exclusive `flock` on
`<index_dir>/build.lock` (released by the kernel when the holder dies, so a killed build never
leaves a stale lock). The next build removes what a killed one left behind. The first build over
an older flat index (meta.json in the folder itself) moves it to this layout.

Incremental builds (`update=True`, `--update`): files whose sha256 is already in the index are not
decoded or encoded again; their vectors, features, labels and thumbnails are reused, files no
longer in the source drop out, new ones are encoded. Only an index built with the same profile,
models, bridge parameters, flip, label count and PCA settings is reused; otherwise the build falls
back to a full one and says why in one log line. With PCA, the index also keeps the unprojected
text-space vectors (`text_vectors.npy`) so that an update refits PCA on the union of old and new
vectors: an updated index equals a full rebuild up to float16 rounding.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app import catalog
from app import index as ix
from app.errors import BuildLocked, ImgSearchError, IndexDirRefused
from app.pca import DEFAULT_DIM, Pca
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Preprocessor, decode_sized, image_format, thumbnail
from app.settings import COLLECTION_PIXELS
from app.sources import Item, Source
from app.vectors import ANN_FILE, build_ann

log = logging.getLogger(__name__)

TEXT_VECTORS = "text_vectors.npy"  # unprojected text-space vectors, kept when PCA is applied
RECORD_CHUNK = 10_000  # manifest rows read per query (SQLite caps the number of parameters)


AnnMode = Literal["auto", "always", "never"]


@dataclass
class BuildConfig:
    """Parameters of one build, recorded in meta.json."""

    pca_dim: int = DEFAULT_DIM
    pca_centred: bool = False
    batch_size: int = 32
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    label_k: int = 5
    max_pixels: int = COLLECTION_PIXELS  # the collection's own files (uploads: Settings.max_image_pixels)
    ann: AnnMode = "auto"  # HNSW graph: always, never, or auto (from ann_min vectors on)
    ann_min: int = 100_000


@dataclass
class BuildReport:
    """What a build did: counts, skipped files with reasons, seconds per stage."""

    indexed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    reused: int = 0
    encoded: int = 0
    removed: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "indexed": self.indexed,
            "reused": self.reused,
            "encoded": self.encoded,
            "removed": self.removed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def decode_item(
    item: Item, preprocess: Preprocessor, max_pixels: int, known: frozenset[str], keep_original: bool
) -> dict[str, Any]:
    """Read one item: bytes → sha256 → (unless reusable) decoded picture → tensor and thumbnail."""
    try:
        raw = item.data if isinstance(item.data, bytes) else item.data.read_bytes()
    except OSError as exc:
        return {"ok": False, "source": item.source, "error": f"cannot read file: {exc.strerror or exc}"}
    sha256 = hashlib.sha256(raw).hexdigest()
    original = raw if keep_original else None
    if sha256 in known:
        return {"ok": True, "reused": True, "source": item.source, "sha256": sha256, "original": original}
    try:
        image, (width, height) = decode_sized(raw, max_pixels)  # large photos decode reduced
        return {
            "ok": True,
            "reused": False,
            "source": item.source,
            "sha256": sha256,
            "width": width,
            "height": height,
            "format": image_format(raw),
            "pixels": preprocess(image),
            "thumbnail": thumbnail(image),
            "original": original,
        }
    except ImgSearchError as exc:
        return {"ok": False, "source": item.source, "error": str(exc)}


class _Decoded(Dataset[dict[str, Any]]):
    """Worker-side read of a source's items (see decode_item)."""

    def __init__(
        self, source: Source, preprocess: Preprocessor, max_pixels: int, known: frozenset[str] = frozenset()
    ) -> None:
        """Read from `source`; files whose sha256 is in `known` are reused, not decoded."""
        self.source = source
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.known = known

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return decode_item(
            self.source[i], self.preprocess, self.max_pixels, self.known, self.source.stores_originals
        )


def collate(batch: list[dict[str, Any]]) -> tuple[torch.Tensor | None, list[dict[str, Any]]]:
    """Stack the tensors of items to encode; keep every item's metadata."""
    tensors = [entry.pop("pixels") for entry in batch if entry["ok"] and not entry["reused"]]
    return (torch.stack(tensors) if tensors else None), batch


# -- engines: where reading and encoding run -------------------------------------------------------

EncodedBatch = tuple[Encoded | None, list[dict[str, Any]]]  # encoded items in order, every item's entry


class Engine(Protocol):
    """Reads and encodes a source in batches, in source order; the write stage below consumes them."""

    name: str

    def batches(
        self,
        source: Source,
        pipeline: Pipeline,
        config: BuildConfig,
        known: frozenset[str],
        timings: dict[str, float],
    ) -> Generator[EncodedBatch, None, None]:
        """Each batch's Encoded (None when it has nothing to encode) and its entries (see decode_item)."""
        ...


class LocalEngine:
    """This machine: DataLoader worker processes decode, this process encodes."""

    name = "local"

    def batches(
        self,
        source: Source,
        pipeline: Pipeline,
        config: BuildConfig,
        known: frozenset[str],
        timings: dict[str, float],
    ) -> Generator[EncodedBatch, None, None]:
        """Batches of `config.batch_size` items; adds seconds waiting on reads and encoding to `timings`."""
        loader = DataLoader(
            _Decoded(source, pipeline.preprocess, config.max_pixels, known),
            batch_size=config.batch_size,
            num_workers=config.workers,
            collate_fn=collate,
            persistent_workers=False,
        )
        mark = time.perf_counter()
        for pixels, batch in loader:
            started = time.perf_counter()
            timings["read"] = timings.get("read", 0.0) + started - mark
            encoded = pipeline.encode_pixels(pixels, config.label_k) if pixels is not None else None
            timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - started
            yield encoded, batch
            mark = time.perf_counter()


# -- the index folder: ownership, lock, generations -------------------------------------------------

GENERATION_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")  # what _new_generation names
REMOVING = ".removing-"  # a generation renamed away, about to be deleted
POINTER_TEMP = re.compile(r"^\.current-\d+$")  # `current` being written
FLAT_FILES = (ix.META, ix.VECTORS, ix.FEATURES, TEXT_VECTORS, ix.MANIFEST, ix.PCA_FILE, ix.REPORT, ANN_FILE)
FLAT_FOLDERS = (ix.THUMBNAILS, ix.ORIGINALS)


def check_index_dir(index_dir: Path, images: Path | None) -> None:
    """IndexDirRefused unless `index_dir` is new, empty or an index of ours, apart from the images."""
    index_dir = index_dir.resolve()
    if images is not None:
        images = images.resolve()
        elsewhere = images.parent / f"{images.name}-index"
        if index_dir == images:
            raise IndexDirRefused(
                f"--index-dir {index_dir} is the images folder: an index needs a folder of its own; "
                f"choose one outside the images, e.g. --index-dir {elsewhere}"
            )
        if index_dir.is_relative_to(images):
            raise IndexDirRefused(
                f"--index-dir {index_dir} is inside the images folder {images}: the next build would "
                f"index the index's thumbnails; choose one outside the images, e.g. --index-dir {elsewhere}"
            )
        if images.is_relative_to(index_dir):
            raise IndexDirRefused(
                f"the images folder {images} is inside --index-dir {index_dir}: the index folder holds "
                f"only what builds write; choose one outside the images, e.g. --index-dir {elsewhere}"
            )
    if not index_dir.exists() or ix.looks_like_index(index_dir):
        return
    if not index_dir.is_dir():
        raise IndexDirRefused(
            f"--index-dir {index_dir} is a file, not a folder; choose a new or empty folder"
        )
    names = sorted(p.name for p in index_dir.iterdir())
    if names:
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise IndexDirRefused(
            f"--index-dir {index_dir} holds files that are not an index ({shown}); a build writes only "
            "into a new or empty folder or an index it made: choose another folder"
        )


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's build lock, or raise BuildLocked at once when another build holds it."""
    path = index_dir / ix.BUILD_LOCK
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BuildLocked(
                f"another build is writing {index_dir} (lock {path} held by process {holder}); "
                "wait for it to finish, or stop it"
            ) from exc
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_generation(index_dir: Path, stores_originals: bool) -> Path:
    """An empty generation for this build: `generations/<UTC time>-<random>/` with its readers lock."""
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    path = index_dir / ix.GENERATIONS / name
    (path / ix.THUMBNAILS).mkdir(parents=True)
    if stores_originals:
        (path / ix.ORIGINALS).mkdir()
    (path / ix.READERS_LOCK).touch()
    return path


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(generation: Path, index_dir: Path) -> None:
    """Serve a finished generation: flush its key files, then replace `current` in one rename."""
    for name in (ix.VECTORS, ix.FEATURES, TEXT_VECTORS, ix.MANIFEST, ix.PCA_FILE, ix.REPORT, ix.META, "."):
        if (generation / name).exists():
            _fsync(generation / name)
    _fsync(generation.parent)
    pointer = index_dir / f".{ix.CURRENT}-{os.getpid()}"
    pointer.unlink(missing_ok=True)
    pointer.symlink_to(Path(ix.GENERATIONS) / generation.name)
    os.replace(pointer, index_dir / ix.CURRENT)
    _fsync(index_dir)


def _discard_unpublished(generation: Path, index_dir: Path) -> None:
    """Remove this build's generation unless it became the current one."""
    if ix.generation_of(index_dir) != generation.name:
        shutil.rmtree(generation, ignore_errors=True)


def _remove_generation(generation: Path) -> bool:
    """Delete a generation no reader holds (renamed away first, under an exclusive flock); False if in use."""
    try:
        with (generation / ix.READERS_LOCK).open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            dying = generation.with_name(REMOVING + generation.name)
            generation.rename(dying)
    except BlockingIOError:
        return False
    except FileNotFoundError:  # a killed build's generation, before its lock file was made
        dying = generation.with_name(REMOVING + generation.name)
        generation.rename(dying)
    shutil.rmtree(dying, ignore_errors=True)
    return True


def remove_stale(index_dir: Path) -> None:
    """Delete what builds left that nothing serves (call with the build lock held); only names we write."""
    for temp in index_dir.iterdir():
        if POINTER_TEMP.match(temp.name) and temp.is_symlink():
            temp.unlink()
    folder, live = index_dir / ix.GENERATIONS, ix.generation_of(index_dir)
    if live is not None and (index_dir / ix.META).is_file():
        _remove_flat(index_dir)
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name.startswith(REMOVING) and GENERATION_NAME.match(entry.name[len(REMOVING) :]):
            shutil.rmtree(entry, ignore_errors=True)
        elif GENERATION_NAME.match(entry.name) and entry.name != live and entry.is_dir():
            try:
                removed = _remove_generation(entry)
            except OSError as exc:
                log.warning("could not remove generation %s (%s); a later build tries again", entry.name, exc)
                continue
            if removed:
                log.info("removed generation %s, no longer served", entry.name)
            else:
                log.info(
                    "kept generation %s: a running service still reads it; a later build removes it",
                    entry.name,
                )


def _remove_flat(index_dir: Path) -> None:
    """Delete an old flat index's files (meta.json first) once a generation replaced it."""
    for name in FLAT_FILES:
        (index_dir / name).unlink(missing_ok=True)
    for name in FLAT_FOLDERS:
        if (index_dir / name).is_dir() and not (index_dir / name).is_symlink():
            shutil.rmtree(index_dir / name, ignore_errors=True)
    log.info("moved %s to the generations layout (%s/…)", index_dir, ix.GENERATIONS)


def _undo_created(index_dir: Path, created: list[Path]) -> None:
    """After a failed first build: remove its lock, its empty generations folder and the folders it made."""
    if not created or ix.generation_of(index_dir) is not None:
        return
    (index_dir / ix.BUILD_LOCK).unlink(missing_ok=True)
    for folder in [index_dir / ix.GENERATIONS, *created]:  # deepest first; rmdir only takes empty ones
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break


# -- reuse of a previous index ---------------------------------------------------------------------


@dataclass
class _Previous:
    """An earlier index of the same settings: what can be reused, by sha256."""

    index: ix.Index
    text_vectors: np.ndarray
    records: dict[str, ix.ImageRecord]

    def close(self) -> None:
        """Release the index."""
        self.index.close()


def _settings_of(pipeline: Pipeline, config: BuildConfig) -> dict[str, Any]:
    """Everything a stored vector, feature or label depends on, as meta.json records it."""
    models = pipeline.models.ids()
    return {
        "profile": pipeline.models.profile,
        "image model": models["image"],
        "text model": models["text"],
        "bridge": pipeline.bridge.params.to_json(),  # as applied (make_bridge may drop references)
        "flip": pipeline.flip,
        "text dimension": pipeline.text_dim,
        "label count": config.label_k,
        "pca dim": config.pca_dim,
        "pca centred": config.pca_centred,
    }


def _settings_in(meta: dict[str, Any]) -> dict[str, Any]:
    """The same keys, read from an index's meta.json (defaults for what older builds did not record)."""
    build = meta.get("build", {})
    return {
        "profile": meta.get("profile"),
        "image model": meta.get("models", {}).get("image"),
        "text model": meta.get("models", {}).get("text"),
        "bridge": meta.get("bridge"),
        "flip": meta.get("flip", True),
        "text dimension": meta.get("dims", {}).get("text"),
        "label count": build.get("label_k", 5),
        "pca dim": build.get("pca_dim"),
        "pca centred": build.get("pca_centred", bool((meta.get("pca") or {}).get("centred", False))),
    }


def _differences(built: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """`key: index X, now Y` for each setting that differs (`key.sub` inside dicts such as the bridge)."""
    found: list[str] = []
    for key, now in wanted.items():
        was = built.get(key)
        if isinstance(was, dict) and isinstance(now, dict):
            found += [
                f"{key}.{sub}: index {was.get(sub)!r}, now {now.get(sub)!r}"
                for sub in sorted(set(was) | set(now))
                if was.get(sub) != now.get(sub)
            ]
        elif was != now:
            found.append(f"{key}: index {was!r}, now {now!r}")
    return found


def _open_previous(index_dir: Path, wanted: dict[str, Any]) -> _Previous | None:
    """The index in place when it can be reused; otherwise None, after one log line saying why."""
    if not (ix.live_path(index_dir) / ix.META).exists():
        log.info("--update: no index at %s yet; building all images", index_dir)
        return None
    try:
        index = ix.Index(index_dir)
    except ImgSearchError as exc:
        log.warning("--update: the index in place cannot be read (%s); building all images", exc)
        return None
    differences = _differences(_settings_in(index.meta), wanted)
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
        text_vectors = np.load(text_path, mmap_mode="r") if index.pca is not None else index.vectors
        records: dict[str, ix.ImageRecord] = {}
        for first in range(0, index.count, RECORD_CHUNK):
            for record in index.records(list(range(first, min(first + RECORD_CHUNK, index.count)))):
                if (index.path / ix.THUMBNAILS / f"{record.id}.jpg").is_file():
                    records[record.sha256] = record
    except (OSError, ValueError) as exc:
        log.warning("--update: the index in place cannot be reused (%s); building all images", exc)
        index.close()
        return None
    return _Previous(index, text_vectors, records)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a file (same filesystem, no copy), or copy it where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# -- the build -------------------------------------------------------------------------------------


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
        if ix.generation_of(index_dir) or (index_dir / ix.META).is_file()
        else "; no index was written"
    )
    return ImgSearchError(f"no readable images in {where} ({len(report.skipped)} skipped){kept}")


def build_index(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig | None = None,
    progress: bool = True,
    update: bool = False,
    engine: Engine | None = None,
) -> BuildReport:
    """Encode every image of `source` into a new generation of the index at `index_dir`, then serve it.

    IndexDirRefused when `index_dir` is not ours to write (check_index_dir), BuildLocked when
    another build runs. `engine` runs reading and encoding (default: LocalEngine); writing is the
    same for every engine. Generations nothing reads any more are removed before and after.
    """
    # update: reuse what the current generation holds by sha256.
    config = config or BuildConfig()
    index_dir = index_dir.resolve()
    check_index_dir(index_dir, source.root)
    created = [folder for folder in (index_dir, *index_dir.parents) if not folder.exists()]
    index_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(index_dir):
        try:
            remove_stale(index_dir)
            previous = _open_previous(index_dir, _settings_of(pipeline, config)) if update else None
            try:
                report = _build(
                    source, index_dir, pipeline, config, progress, previous, engine or LocalEngine()
                )
            finally:
                if previous is not None:
                    previous.close()
            remove_stale(index_dir)  # the generation served before, unless a service still reads it
            return report
        except BaseException:
            _undo_created(index_dir, created)
            raise


def _build(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig,
    progress: bool,
    previous: _Previous | None,
    engine: Engine,
) -> BuildReport:
    """The build itself, with the lock held: the engine's batches in, the index out."""
    report = BuildReport()
    tmp = _new_generation(index_dir, source.stores_originals)
    known = frozenset(previous.records) if previous is not None else frozenset()
    saved_pca, pipeline.pca = pipeline.pca, None
    try:
        vectors: list[np.ndarray] = []
        features: list[np.ndarray] = []
        records: list[ix.ImageRecord] = []
        seen: dict[str, str] = {}
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with (
            tqdm(
                total=len(source), desc=f"indexing ({engine.name})", unit="img", disable=not progress
            ) as bar,
            closing(engine.batches(source, pipeline, config, known, timings)) as batches,
        ):
            for encoded, batch in batches:
                after_encode = time.perf_counter()
                position = 0
                for entry in batch:
                    if not entry["ok"]:
                        report.skipped.append({"source": entry["source"], "reason": entry["error"]})
                        continue
                    image_id = ix.image_id(entry["sha256"])
                    if entry["reused"]:
                        assert previous is not None
                        old = previous.records[entry["sha256"]]
                        vector = np.asarray(previous.text_vectors[old.row], dtype=np.float32)
                        feature = np.asarray(previous.index.features[old.row], dtype=np.float32)
                        width, height, fmt, labels = old.width, old.height, old.format, old.labels
                    else:
                        assert encoded is not None
                        vector, feature = encoded.vectors[position], encoded.features[position]
                        width, height, fmt = entry["width"], entry["height"], entry["format"]
                        labels = encoded.labels[position]
                        position += 1
                    if image_id in seen:
                        report.duplicates.append({"source": entry["source"], "same_as": seen[image_id]})
                        continue
                    seen[image_id] = entry["source"]
                    source_name = entry["source"]  # a file's path, or a dataset's `name[split]#row`
                    if entry["original"] is not None:
                        (tmp / ix.original_name(image_id, fmt)).write_bytes(entry["original"])
                    thumb = tmp / ix.THUMBNAILS / f"{image_id}.jpg"
                    if entry["reused"]:
                        assert previous is not None
                        _link_or_copy(previous.index.path / ix.THUMBNAILS / f"{image_id}.jpg", thumb)
                        report.reused += 1
                    else:
                        thumb.write_bytes(entry["thumbnail"])
                        report.encoded += 1
                    records.append(
                        ix.ImageRecord(
                            row=len(records),
                            id=image_id,
                            source=source_name,
                            sha256=entry["sha256"],
                            width=width,
                            height=height,
                            format=fmt,
                            labels=labels,
                        )
                    )
                    vectors.append(vector)
                    features.append(feature)
                bar.update(len(batch))
                timings["write"] = timings.get("write", 0.0) + time.perf_counter() - after_encode
        if not records:
            raise _nothing_to_index(source, report, index_dir)
        if previous is not None:
            report.removed = len(set(previous.records) - {r.sha256 for r in records})
        write_started = time.perf_counter()
        raw = np.stack(vectors).astype(np.float32)
        matrix = raw
        pca: Pca | None = None
        if config.pca_dim and raw.shape[0] > config.pca_dim and config.pca_dim < raw.shape[1]:
            pca = Pca.fit(raw, config.pca_dim, centred=config.pca_centred)
            matrix = pca.transform(raw)
            pca.save(tmp / ix.PCA_FILE)
            np.save(tmp / TEXT_VECTORS, raw.astype(np.float16))
        elif config.pca_dim:
            log.info("%s", pca_skipped(raw.shape[0], raw.shape[1], config.pca_dim))
        timings["pca"] = time.perf_counter() - write_started
        stored = matrix.astype(np.float16)
        np.save(tmp / ix.VECTORS, stored)
        if config.ann == "always" or (config.ann == "auto" and stored.shape[0] >= config.ann_min):
            timings["ann"] = build_ann(stored, tmp / ANN_FILE)
        np.save(tmp / ix.FEATURES, np.stack(features).astype(np.float16))
        ix.write_manifest(tmp / ix.MANIFEST, records)
        catalog.write(tmp / ix.MANIFEST, records, source, tmp)  # metadata and lexical tables
        report.indexed = len(records)
        timings["write"] += time.perf_counter() - write_started - timings["pca"] - timings.get("ann", 0.0)
        timings["total"] = time.perf_counter() - started
        report.seconds = timings
        models = pipeline.models
        meta = {
            "format_version": ix.FORMAT_VERSION,
            "profile": models.profile,
            "models": models.ids(),
            "dims": {
                "vector": int(matrix.shape[1]),
                "text": pipeline.text_dim,
                "feature": int(features[0].shape[0]),
            },
            "count": len(records),
            "vector_dtype": "float16",
            "pca": {"dim": pca.dim, "centred": pca.centred} if pca else None,
            "bridge": pipeline.bridge.params.to_json(),
            "identity_bridge": pipeline.bridge.identity,
            "flip": pipeline.flip,
            "collection_root": None if source.stores_originals else str(source.root),
            "source": getattr(source, "name", None) or str(source.root),
            "build": {
                "batch_size": config.batch_size,
                "workers": config.workers,
                "pca_dim": config.pca_dim,
                "pca_centred": config.pca_centred,
                "label_k": config.label_k,
                "ann": (tmp / ANN_FILE).is_file(),
                "update": previous is not None,
                "engine": engine.name,
            },
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_id": uuid.uuid4().hex,  # names this build's Milvus collection (app/milvus.py)
        }
        (tmp / ix.REPORT).write_text(json.dumps(report.to_json(), indent=2))
        (tmp / ix.META).write_text(json.dumps(meta, indent=2))  # last: an index without it is not one
        _publish(tmp, index_dir)
    finally:
        pipeline.pca = saved_pca
        _discard_unpublished(tmp, index_dir)
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
    return report
