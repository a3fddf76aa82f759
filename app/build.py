"""Offline build: read (parallel decode) → encode (batched) → write (atomic swap into place).

Reading and encoding run in an engine: `LocalEngine` (DataLoader workers on this machine) or
`app.build_ray.RayEngine` (an actor pool on a Ray cluster). Both feed the one write stage below.

Crash safety: a build writes into `.<name>.building-<pid>` next to the index and swaps it in with
one atomic exchange of directory names (Linux `renameat2(RENAME_EXCHANGE)`; two renames
elsewhere), so a build killed at any point leaves the index in place complete and loadable. One
build at a time per index: an exclusive `flock` on `<index_dir>.lock` (released by the kernel when
the holder dies, so a killed build never leaves a stale lock). The next build removes what a killed
one left behind.

Incremental builds (`update=True`, `--update`): files whose sha256 is already in the index are not
decoded or encoded again; their vectors, features, labels and thumbnails are reused, files no
longer in the source drop out, new ones are encoded. Only an index built with the same profile,
models, bridge parameters, flip, label count and PCA settings is reused; otherwise the build falls
back to a full one and says why in one log line. With PCA, the index also keeps the unprojected
text-space vectors (`text_vectors.npy`) so that an update refits PCA on the union of old and new
vectors: an updated index equals a full rebuild up to float16 rounding.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
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

from app import index as ix
from app.errors import BuildLocked, ImgSearchError
from app.pca import DEFAULT_DIM, Pca
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Preprocessor, decode, image_format, thumbnail
from app.sources import Item, Source
from app.vectors import ANN_FILE, build_ann

log = logging.getLogger(__name__)

TEXT_VECTORS = "text_vectors.npy"  # unprojected text-space vectors, kept when PCA is applied
BUILDING = "building"
OLD = "old"
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
    max_pixels: int = 50_000_000
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
        image = decode(raw, max_pixels)
        return {
            "ok": True,
            "reused": False,
            "source": item.source,
            "sha256": sha256,
            "width": image.width,
            "height": image.height,
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


# -- lock, leftovers, atomic swap ------------------------------------------------------------------


def lock_path(index_dir: Path) -> Path:
    """The lock file of an index directory: `<index_dir>.lock`, next to it."""
    return index_dir.with_name(f"{index_dir.name}.lock")


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's build lock, or raise BuildLocked at once when another build holds it."""
    path = lock_path(index_dir)
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


def _temp_dir(index_dir: Path, kind: str) -> Path:
    """`.<name>.<kind>-<pid>` next to the index."""
    return index_dir.with_name(f".{index_dir.name}.{kind}-{os.getpid()}")


def _leftovers(index_dir: Path, kind: str) -> list[Path]:
    """Temporary directories of that kind that earlier builds of this index left behind."""
    prefix = f".{index_dir.name}.{kind}-"
    return sorted(p for p in index_dir.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def clean_leftovers(index_dir: Path) -> None:
    """Remove what killed builds left (call with the lock held); bring back an index set aside mid-swap."""
    if not index_dir.exists():
        # Only the two-rename fallback can be killed between its renames: the old index is complete.
        for old in sorted(_leftovers(index_dir, OLD), key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                ix.Index(old).close()
            except ImgSearchError:
                continue
            old.rename(index_dir)
            log.warning("restored %s from %s, set aside by an interrupted build", index_dir, old.name)
            break
    for leftover in _leftovers(index_dir, BUILDING) + _leftovers(index_dir, OLD):
        log.info("removing %s, left by an interrupted build", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory names (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace `target` with the finished `tmp` directory; the old index ends up at `tmp`."""
    for name in (ix.VECTORS, ix.FEATURES, TEXT_VECTORS, ix.MANIFEST, ix.PCA_FILE, ix.REPORT, ix.META, "."):
        if (tmp / name).exists():
            _fsync(tmp / name)
    if not target.exists():
        tmp.rename(target)
    elif not _exchange(tmp, target):
        old = _temp_dir(target, OLD)
        target.rename(old)
        tmp.rename(target)
        old.rename(tmp)
    _fsync(target.parent)


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
    if not (index_dir / ix.META).exists():
        log.info("--update: no index at %s yet; building all images", index_dir)
        return None
    try:
        index = ix.Index(index_dir)
    except ImgSearchError as exc:
        log.warning("--update: the index in place cannot be read (%s); building all images", exc)
        return None
    differences = _differences(_settings_in(index.meta), wanted)
    text_path = index_dir / TEXT_VECTORS
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
                if (index_dir / ix.THUMBNAILS / f"{record.id}.jpg").is_file():
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


def build_index(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig | None = None,
    progress: bool = True,
    update: bool = False,
    engine: Engine | None = None,
) -> BuildReport:
    """Encode every image of `source` into a complete index at `index_dir` (BuildLocked if one runs).

    `engine` runs reading and encoding (default: LocalEngine); writing is the same for every engine.
    """
    # update: reuse what the index in place holds by sha256.
    config = config or BuildConfig()
    index_dir = index_dir.resolve()
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(index_dir):
        clean_leftovers(index_dir)
        previous = _open_previous(index_dir, _settings_of(pipeline, config)) if update else None
        try:
            return _build(source, index_dir, pipeline, config, progress, previous, engine or LocalEngine())
        finally:
            if previous is not None:
                previous.close()


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
    tmp = _temp_dir(index_dir, BUILDING)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ix.THUMBNAILS).mkdir(parents=True)
    if source.stores_originals:
        (tmp / ix.ORIGINALS).mkdir()
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
                    source_name = entry["source"]
                    if entry["original"] is not None:
                        source_name = f"{ix.ORIGINALS}/{image_id}.{(fmt or 'bin').lower()}"
                        (tmp / source_name).write_bytes(entry["original"])
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
            raise ImgSearchError(
                f"no readable images in {getattr(source, 'root', None) or 'the source'} "
                f"({len(report.skipped)} skipped); the existing index was left as it was"
            )
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
            log.info("PCA skipped: %d images, %d dimensions ≤ --pca-dim %d", *raw.shape, config.pca_dim)
        timings["pca"] = time.perf_counter() - write_started
        stored = matrix.astype(np.float16)
        np.save(tmp / ix.VECTORS, stored)
        if config.ann == "always" or (config.ann == "auto" and stored.shape[0] >= config.ann_min):
            timings["ann"] = build_ann(stored, tmp / ANN_FILE)
        np.save(tmp / ix.FEATURES, np.stack(features).astype(np.float16))
        ix.write_manifest(tmp / ix.MANIFEST, records)
        report.indexed = len(records)
        timings["write"] += time.perf_counter() - write_started - timings["pca"] - timings.get("ann", 0.0)
        timings["total"] = time.perf_counter() - started
        report.seconds = timings
        models = pipeline.models
        meta = {
            "format_version": ix.FORMAT_VERSION,
            "profile": models.profile,
            "models": models.ids(),
            "precision": {"image": models.image.precision},  # older indexes: none recorded (fp32)
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
        _swap_into_place(tmp, index_dir)
    finally:
        pipeline.pca = saved_pca
        shutil.rmtree(tmp, ignore_errors=True)
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
