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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app import catalog, index as ix
from app.errors import BuildLocked, ImgSearchError, IndexDirRefused
from app.meta import BuildInfo, BuildSettings, Dims, IndexMeta, PcaInfo
from app.pca import DEFAULT_DIM, Pca
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Inputs, Pixels, decode_sized, image_format, stack, thumbnail
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
    ann: AnnMode = "auto"  # ANN file: always, never, or auto (from ann_min vectors on)
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


@dataclass(frozen=True)
class Failed:
    """An item that could not be read or decoded, and why."""

    source: str
    error: str


@dataclass(frozen=True)
class Reused:
    """An item whose sha256 the previous index holds: its stored vectors and thumbnail are reused."""

    source: str
    sha256: str
    original: bytes | None  # the bytes to keep, for sources that store originals


@dataclass(frozen=True)
class Fresh:
    """A decoded item to encode: its tensors (until collate stacks them), size, format and thumbnail."""

    source: str
    sha256: str
    original: bytes | None
    width: int
    height: int
    format: str | None
    thumbnail: bytes
    pixels: Pixels | None = None  # one tensor per encoder input size (app/preprocessing.Inputs)


DecodedItem = Failed | Reused | Fresh  # what reading one item gives


def decode_item(
    item: Item, preprocess: Inputs, max_pixels: int, known: frozenset[str], keep_original: bool
) -> DecodedItem:
    """Read one item: bytes → sha256 → (unless reusable) decoded picture → tensor and thumbnail."""
    try:
        raw = item.data if isinstance(item.data, bytes) else item.data.read_bytes()
    except OSError as exc:
        return Failed(item.source, f"cannot read file: {exc.strerror or exc}")
    sha256 = hashlib.sha256(raw).hexdigest()
    original = raw if keep_original else None
    if sha256 in known:
        return Reused(item.source, sha256, original)
    try:
        image, (width, height) = decode_sized(raw, max_pixels)  # large photos decode reduced
        return Fresh(
            source=item.source,
            sha256=sha256,
            original=original,
            width=width,
            height=height,
            format=image_format(raw),
            thumbnail=thumbnail(image),
            pixels=preprocess(image),
        )
    except ImgSearchError as exc:
        return Failed(item.source, str(exc))


class _Decoded(Dataset[DecodedItem]):
    """Worker-side read of a source's items (see decode_item)."""

    def __init__(
        self, source: Source, preprocess: Inputs, max_pixels: int, known: frozenset[str] = frozenset()
    ) -> None:
        """Read from `source`; files whose sha256 is in `known` are reused, not decoded."""
        self.source = source
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.known = known

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> DecodedItem:
        return decode_item(
            self.source[i], self.preprocess, self.max_pixels, self.known, self.source.stores_originals
        )


def collate(batch: list[DecodedItem]) -> tuple[Pixels | None, list[DecodedItem]]:
    """Stack the tensors of items to encode; keep every item, fresh ones without their tensors."""
    tensors = [item.pixels for item in batch if isinstance(item, Fresh) and item.pixels is not None]
    items = [replace(item, pixels=None) if isinstance(item, Fresh) else item for item in batch]
    return (stack(tensors) if tensors else None), items


# -- engines: where reading and encoding run -------------------------------------------------------

EncodedBatch = tuple[Encoded | None, list[DecodedItem]]  # the Fresh items encoded in order, every item


def encode(pipeline: Pipeline, pixels: Pixels | None, label_k: int) -> Encoded | None:
    """A collated batch's tensors → Encoded without PCA (the build fits PCA afterwards); None for none."""
    return pipeline.encode_pixels(pixels, label_k, project=False) if pixels is not None else None


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
        """Each batch's Encoded (None when it has nothing to encode) and its items (see decode_item)."""
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
            encoded = encode(pipeline, pixels, config.label_k)
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


def _open_previous(index_dir: Path, wanted: BuildSettings) -> _Previous | None:
    """The index in place when it can be reused; otherwise None, after one log line saying why."""
    if not (ix.live_path(index_dir) / ix.META).exists():
        log.info("--update: no index at %s yet; building all images", index_dir)
        return None
    try:
        index = ix.Index(index_dir)
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
    records: list[ix.ImageRecord] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # id → source of its first copy


def _reused(item: Reused, previous: _Previous | None) -> _Encoding:
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
    item: Reused | Fresh, image_id: str, fmt: str | None, generation: Path, previous: _Previous | None
) -> str:
    """Write the item's thumbnail (linked when reused) and original; its manifest source."""
    source_name = item.source  # a file's path, or a dataset's `name[split]#row`
    if item.original is not None:
        (generation / ix.original_name(image_id, fmt)).write_bytes(item.original)
    thumb = generation / ix.THUMBNAILS / f"{image_id}.jpg"
    if isinstance(item, Reused):
        assert previous is not None
        _link_or_copy(previous.index.path / ix.THUMBNAILS / f"{image_id}.jpg", thumb)
    else:
        thumb.write_bytes(item.thumbnail)
    return source_name


def _take(
    batch: list[DecodedItem],
    encoded: Encoded | None,
    previous: _Previous | None,
    generation: Path,
    collected: _Collected,
    report: BuildReport,
) -> None:
    """Add one batch's items to `collected` (skips and duplicates to `report`), writing their files."""
    position = 0
    for item in batch:
        if isinstance(item, Failed):
            report.skipped.append({"source": item.source, "reason": item.error})
            continue
        if isinstance(item, Reused):
            encoding = _reused(item, previous)
        else:
            encoding = _fresh(item, encoded, position)
            position += 1
        image_id = ix.image_id(item.sha256)
        if image_id in collected.seen:
            report.duplicates.append({"source": item.source, "same_as": collected.seen[image_id]})
            continue
        collected.seen[image_id] = item.source
        source_name = _store_files(item, image_id, encoding.format, generation, previous)
        if isinstance(item, Reused):
            report.reused += 1
        else:
            report.encoded += 1
        collected.records.append(
            ix.ImageRecord(
                row=len(collected.records),
                id=image_id,
                source=source_name,
                sha256=item.sha256,
                width=encoding.width,
                height=encoding.height,
                format=encoding.format,
                labels=encoding.labels,
            )
        )
        collected.vectors.append(encoding.vector)
        collected.features.append(encoding.feature)


@dataclass(frozen=True)
class _Run:
    """One build's fixed inputs, shared by its stages."""

    source: Source
    index_dir: Path
    generation: Path
    pipeline: Pipeline
    config: BuildConfig
    previous: _Previous | None
    engine: Engine


def _collect(run: _Run, report: BuildReport, timings: dict[str, float], progress: bool) -> _Collected:
    """Stage 1: the engine's batches in, thumbnails and originals written, rows gathered."""
    previous = run.previous
    known = frozenset(previous.records) if previous is not None else frozenset()
    collected = _Collected()
    with (
        tqdm(
            total=len(run.source), desc=f"indexing ({run.engine.name})", unit="img", disable=not progress
        ) as bar,
        closing(run.engine.batches(run.source, run.pipeline, run.config, known, timings)) as batches,
    ):
        for encoded, batch in batches:
            after_encode = time.perf_counter()
            _take(batch, encoded, previous, run.generation, collected, report)
            bar.update(len(batch))
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - after_encode
    if not collected.records:
        raise _nothing_to_index(run.source, report, run.index_dir)
    if previous is not None:
        report.removed = len(set(previous.records) - {r.sha256 for r in collected.records})
    return collected


def _project(raw: np.ndarray, config: BuildConfig, generation: Path) -> tuple[np.ndarray, Pca | None]:
    """Stage 2: fit PCA on the text-space vectors when there are enough, keeping them for updates."""
    if config.pca_dim and raw.shape[0] > config.pca_dim and config.pca_dim < raw.shape[1]:
        pca = Pca.fit(raw, config.pca_dim, centred=config.pca_centred)
        pca.save(generation / ix.PCA_FILE)
        np.save(generation / TEXT_VECTORS, raw.astype(np.float16))
        return pca.transform(raw), pca
    if config.pca_dim:
        log.info("%s", pca_skipped(raw.shape[0], raw.shape[1], config.pca_dim))
    return raw, None


def _write_arrays(
    run: _Run, collected: _Collected, timings: dict[str, float]
) -> tuple[np.ndarray, Pca | None]:
    """Stages 2–3: project, then write vectors, the ANN graph, features and the manifest."""
    started = time.perf_counter()
    matrix, pca = _project(np.stack(collected.vectors).astype(np.float32), run.config, run.generation)
    timings["pca"] = time.perf_counter() - started
    stored = matrix.astype(np.float16)
    np.save(run.generation / ix.VECTORS, stored)
    ann = run.config.ann
    if ann == "always" or (ann == "auto" and stored.shape[0] >= run.config.ann_min):
        timings["ann"] = build_ann(stored, run.generation / ANN_FILE)
    np.save(run.generation / ix.FEATURES, np.stack(collected.features).astype(np.float16))
    ix.write_manifest(run.generation / ix.MANIFEST, collected.records)
    catalog.write(
        run.generation / ix.MANIFEST, collected.records, run.source, run.generation
    )  # metadata, lexical
    timings["write"] += time.perf_counter() - started - timings["pca"] - timings.get("ann", 0.0)
    return matrix, pca


def _meta(run: _Run, vector_dim: int, feature_dim: int, count: int, pca: Pca | None) -> IndexMeta:
    """Stage 4: what meta.json records of this build."""
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


def _build(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig,
    progress: bool,
    previous: _Previous | None,
    engine: Engine,
) -> BuildReport:
    """The build itself, with the lock held: collect → project → write arrays → meta → publish."""
    report = BuildReport()
    generation = _new_generation(index_dir, source.stores_originals)
    run = _Run(source, index_dir, generation, pipeline, config, previous, engine)
    try:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        collected = _collect(run, report, timings, progress)
        matrix, pca = _write_arrays(run, collected, timings)
        report.indexed = len(collected.records)
        timings["total"] = time.perf_counter() - started
        report.seconds = timings
        meta = _meta(run, int(matrix.shape[1]), int(collected.features[0].shape[0]), report.indexed, pca)
        (generation / ix.REPORT).write_text(json.dumps(report.to_json(), indent=2))
        # meta.json last: a generation without it is not an index
        (generation / ix.META).write_text(json.dumps(meta.to_json(), indent=2))
        _publish(generation, index_dir)
    finally:
        _discard_unpublished(generation, index_dir)
    _log_report(report)
    return report


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
