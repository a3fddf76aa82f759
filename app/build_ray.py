"""The distributed build engine: Ray Data reads and encodes, the local write stage writes.

The file list (or a `datasets` source's row numbers) becomes a Ray Dataset; `map_batches` runs
decoding and encoding in a pool of actors that each build the pipeline once from a picklable
factory (one GPU per actor where the cluster has GPUs, CPUs otherwise). Results stream back in
source order to the write stage (`app.writing`), so an index built here has the same format, ids and
vectors as one built by the local engine. Without an address, `ray.init` starts a one-machine
cluster for the build and stops it afterwards; a session already started is used and left running.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.bridge import BridgeParams
from app.decoding import DecodedItem, Failed, Fresh, Reused, collate, decode_item
from app.engines import EncodedBatch, encode
from app.errors import ImgSearchError
from app.meta import BuildConfig
from app.pipeline import Encoded, Pipeline
from app.settings import Settings
from app.sources import FolderSource, Item, Source

if TYPE_CHECKING:
    from ray.data import Dataset

log = logging.getLogger(__name__)

PipelineFactory = Callable[[], Pipeline]
MAX_BLOCKS = 4096  # input blocks of the file list; each is split into batches of --batch-size


@dataclass(frozen=True)
class ProfilePipeline:
    """A picklable recipe for a profile's pipeline: called once in each actor (and by the driver)."""

    profile: str
    settings: Settings
    params: BridgeParams
    flip: bool = True

    def __call__(self) -> Pipeline:
        """Load the profile's image and text models on this process's device and build the bridge."""
        from app.registry import make_bridge, prepare

        models = prepare(self.settings, self.profile, with_lm=False)
        return Pipeline(models, make_bridge(models, self.params, self.settings.cache_dir), flip=self.flip)


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array (strings or bytes stay whole, never split into characters)."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def pack(rows: np.ndarray, items: list[DecodedItem], encoded: Encoded | None) -> dict[str, np.ndarray]:
    """One batch of decode_item results and their encodings as Ray Data columns (one row per item)."""
    vectors, features, labels = [b""] * len(items), [b""] * len(items), [""] * len(items)
    position = 0
    for i, item in enumerate(items):
        if isinstance(item, Fresh):
            assert encoded is not None
            vectors[i] = np.asarray(encoded.vectors[position], dtype=np.float32).tobytes()
            features[i] = np.asarray(encoded.features[position], dtype=np.float32).tobytes()
            labels[i] = json.dumps(encoded.labels[position])
            position += 1
    fresh = [item if isinstance(item, Fresh) else None for item in items]
    return {
        "row": np.asarray(rows, dtype=np.int64),
        "ok": np.array([not isinstance(item, Failed) for item in items], dtype=bool),
        "reused": np.array([isinstance(item, Reused) for item in items], dtype=bool),
        "source": _objects([item.source for item in items]),
        "error": _objects([item.error if isinstance(item, Failed) else "" for item in items]),
        "sha256": _objects(["" if isinstance(item, Failed) else item.sha256 for item in items]),
        "width": np.array([f.width if f else 0 for f in fresh], dtype=np.int64),
        "height": np.array([f.height if f else 0 for f in fresh], dtype=np.int64),
        "format": _objects([(f.format if f else None) or "" for f in fresh]),
        "thumbnail": _objects([f.thumbnail if f else b"" for f in fresh]),
        "original": _objects([b"" if isinstance(item, Failed) else item.original or b"" for item in items]),
        "vector": _objects(vectors),
        "feature": _objects(features),
        "labels": _objects(labels),
    }


def _item(batch: dict[str, np.ndarray], i: int, keep_original: bool) -> DecodedItem:
    """Row `i` of packed columns back into its decode_item result (without the tensor)."""
    source = str(batch["source"][i])
    if not batch["ok"][i]:
        return Failed(source, str(batch["error"][i]))
    sha256 = str(batch["sha256"][i])
    original = bytes(batch["original"][i]) if keep_original else None
    if batch["reused"][i]:
        return Reused(source, sha256, original)
    return Fresh(
        source=source,
        sha256=sha256,
        original=original,
        width=int(batch["width"][i]),
        height=int(batch["height"][i]),
        format=str(batch["format"][i]) or None,
        thumbnail=bytes(batch["thumbnail"][i]),
    )


def unpack(batch: dict[str, np.ndarray], keep_original: bool) -> EncodedBatch:
    """Columns back into what the local engine yields: Encoded of the fresh items, every item."""
    items = [_item(batch, i, keep_original) for i in range(len(batch["row"]))]
    fresh = [i for i, item in enumerate(items) if isinstance(item, Fresh)]
    if not fresh:
        return None, items
    encoded = Encoded(
        np.stack([np.frombuffer(batch["vector"][i], dtype=np.float32) for i in fresh]),
        np.stack([np.frombuffer(batch["feature"][i], dtype=np.float32) for i in fresh]),
        [[(str(label), float(score)) for label, score in json.loads(batch["labels"][i])] for i in fresh],
    )
    return encoded, items


class EncodeActor:
    """One Ray actor: builds the pipeline once, then decodes and encodes batches of rows."""

    def __init__(
        self,
        factory: PipelineFactory,
        source: Source | None,
        known: frozenset[str],
        config: BuildConfig,
        keep_original: bool,
        threads: int,
    ) -> None:
        """`source` reads rows without a path (a `datasets` source); folders ship paths in the rows."""
        self.pipeline = factory()
        self.source = source
        self.config = config
        self.decode = partial(
            decode_item,
            preprocess=self.pipeline.preprocess,
            max_pixels=config.max_pixels,
            known=known,
            keep_original=keep_original,
        )
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _item(self, row: int, source: str, path: str) -> Item:
        """The item a dataset row stands for."""
        if path:
            return Item(source=source, data=Path(path))
        assert self.source is not None
        return self.source[row]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Decode (in threads), encode as one batch, and pack the results."""
        items = [
            self._item(int(row), str(source), str(path))
            for row, source, path in zip(batch["row"], batch["source"], batch["path"], strict=True)
        ]
        decoded = list(self.pool.map(self.decode, items)) if self.pool else [self.decode(i) for i in items]
        pixels, decoded = collate(decoded)
        return pack(batch["row"], decoded, encode(self.pipeline, pixels, self.config.label_k))


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[bool]:
    """Connect to the cluster at `address` (or RAY_ADDRESS), else start a one-machine one.

    Yields whether this call started the session; a session this process already holds is used as
    it is and left running.
    """
    import ray

    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING
        )
    try:
        yield True
    finally:
        ray.shutdown()


def _rows(source: Source) -> list[dict[str, Any]]:
    """The Ray Dataset's rows: the file list for a folder, row numbers for other sources."""
    if isinstance(source, FolderSource):
        return [
            {"row": row, "source": path.relative_to(source.folder).as_posix(), "path": str(path)}
            for row, path in enumerate(source.paths)
        ]
    return [{"row": row, "source": "", "path": ""} for row in range(len(source))]


def actor_resources(workers: int) -> tuple[float, float]:
    """(CPUs, GPUs) per actor: one GPU and that GPU's share of its node's CPUs, else a share of CPUs."""
    import ray

    ray_: Any = ray  # typed in some Ray releases, not in others
    listed: list[dict[str, Any]] = ray_.nodes()
    nodes = [node["Resources"] for node in listed if node.get("Alive")]
    gpu_nodes = [resources for resources in nodes if resources.get("GPU", 0) >= 1]
    if gpu_nodes:
        return float(min(max(1, int(r.get("CPU", 1) // r["GPU"])) for r in gpu_nodes)), 1.0
    total = sum(resources.get("CPU", 0) for resources in nodes)
    share = min(total / workers, max(resources.get("CPU", 0) for resources in nodes))
    return (float(int(share)) if share >= 1 else share), 0.0


@dataclass
class RayEngine:
    """Reads and encodes on a Ray cluster: an actor pool in `map_batches` over the file list."""

    factory: PipelineFactory
    address: str | None = None  # None: a one-machine cluster for this build
    workers: int | None = None  # actors; default: one per GPU of the cluster, else 1
    num_cpus: int | None = None  # CPUs of the one-machine cluster (default: all of this machine's)
    name: str = "ray"

    def batches(
        self,
        source: Source,
        pipeline: Pipeline,
        config: BuildConfig,
        known: frozenset[str],
        timings: dict[str, float],
    ) -> Generator[EncodedBatch, None, None]:
        """Batches in source order; adds seconds of start-up, first batch and later waits to `timings`."""
        try:
            import ray
            import ray.data
        except ImportError as exc:
            raise ImgSearchError("--engine ray needs Ray Data: pip install 'imgsearch[scale]'") from exc

        started = time.perf_counter()
        with ray_session(self.address, self.num_cpus):
            ray_: Any = ray  # typed in some Ray releases, not in others
            gpus = int(ray_.cluster_resources().get("GPU", 0))
            workers = self.workers or max(1, gpus)
            cpus, gpus_each = actor_resources(workers)
            threads = max(1, min(config.workers, int(cpus))) if config.workers else 1
            log.info(
                "Ray: %d actor(s) × (%g CPU, %g GPU), %d decode thread(s) each, on %s",
                workers,
                cpus,
                gpus_each,
                threads,
                self.address or os.environ.get("RAY_ADDRESS") or "a one-machine cluster",
            )
            context = ray.data.DataContext.get_current()
            saved = context.execution_options.preserve_order, context.enable_progress_bars
            context.execution_options.preserve_order = True  # the write stage needs source order
            context.enable_progress_bars = False  # the build shows its own
            try:
                dataset = self._dataset(source, config, known, workers, (cpus, gpus_each), threads)
                timings["startup"] = time.perf_counter() - started
                yield from _in_order(dataset, source.stores_originals, timings)
            finally:
                context.execution_options.preserve_order, context.enable_progress_bars = saved

    def _dataset(
        self,
        source: Source,
        config: BuildConfig,
        known: frozenset[str],
        workers: int,
        resources: tuple[float, float],
        threads: int,
    ) -> Dataset:
        """The file list as a Ray Dataset mapped through a pool of `workers` EncodeActors."""
        import ray.data

        rows = _rows(source)
        blocks = max(1, min(MAX_BLOCKS, math.ceil(len(rows) / config.batch_size)))
        return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            EncodeActor,
            batch_size=config.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=resources[0],
            num_gpus=resources[1],
            fn_constructor_kwargs={
                "factory": self.factory,
                "source": None if isinstance(source, FolderSource) else source,
                "known": known,
                "config": config,
                "keep_original": source.stores_originals,
                "threads": threads,
            },
        )


def _in_order(dataset: Dataset, keep_original: bool, timings: dict[str, float]) -> Iterator[EncodedBatch]:
    """The dataset's batches unpacked, checked to arrive in source order; waits added to `timings`."""
    expected = 0
    mark = time.perf_counter()
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        # The first wait includes starting the actors and loading their models.
        key = "ray" if expected else "first batch"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - mark
        got = batch["row"]
        if not np.array_equal(got, np.arange(expected, expected + len(got))):
            raise RuntimeError(f"Ray returned rows out of order at row {expected}")
        expected += len(got)
        yield unpack(batch, keep_original)
        mark = time.perf_counter()
