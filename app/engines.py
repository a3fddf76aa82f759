"""Build stage 2, where reading and encoding run: an engine yields encoded batches in source order.

`LocalEngine` decodes in DataLoader worker processes on this machine and encodes in this process;
`app.build_ray.RayEngine` runs both in a pool of Ray actors. Both feed the one write stage
(app/writing.py). A decode worker holds nothing of the build: it dies with the process that started
it (kill -9 included: the kernel's parent-death signal), leaves at once on Ctrl-C (the build stops on
the same signal and reaps its workers before it exits), and drops the index lock descriptors it
inherited at fork, so the next build or watcher takes the lock the moment the build is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import Protocol

from torch.utils.data import DataLoader

from app.decoding import DecodedItem, DecodedSource, collate
from app.layout import BUILD_LOCK, READERS_LOCK
from app.meta import BuildConfig
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Pixels
from app.sources import Source

EncodedBatch = tuple[Encoded | None, list[DecodedItem]]  # the Fresh items encoded in order, every item
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when the thread that forked it exits
LOCK_FILES = (BUILD_LOCK, READERS_LOCK)


def encode(pipeline: Pipeline, pixels: Pixels | None, label_k: int) -> Encoded | None:
    """A collated batch's tensors → Encoded without PCA (the build fits PCA afterwards); None for none."""
    return pipeline.encode_pixels(pixels, label_k, project=False) if pixels is not None else None


class Engine(Protocol):
    """Reads and encodes a source in batches, in source order; the write stage consumes them."""

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
            DecodedSource(source, pipeline.preprocess, config.max_pixels, known),
            batch_size=config.batch_size,
            num_workers=config.workers,
            collate_fn=collate,
            persistent_workers=False,
            worker_init_fn=partial(worker_started, parent=os.getpid()) if config.workers else None,
        )
        loaded = iter(loader)
        try:
            mark = time.perf_counter()
            for pixels, batch in loaded:
                started = time.perf_counter()
                timings["read"] = timings.get("read", 0.0) + started - mark
                encoded = encode(pipeline, pixels, config.label_k)
                timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - started
                yield encoded, batch
                mark = time.perf_counter()
        finally:
            del loaded  # stops the workers now, not once an exception's traceback lets go of this frame


def worker_started(worker_id: int, parent: int) -> None:
    """In a decode worker, first: die with `parent`, leave on Ctrl-C, drop inherited lock descriptors."""
    signal.signal(signal.SIGINT, _leave)
    if sys.platform != "linux":  # no prctl (macOS starts workers by spawn: nothing inherited)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the build died before the signal was asked for
        os._exit(1)
    _drop_lock_descriptors()


def _leave(signum: int, frame: object) -> None:
    """Ctrl-C, which reaches the whole foreground group: the batch in hand is of no use to the build,
    which stops on the same signal, so leave at once (status 0: the DataLoader does not call it a
    failure; no exit handlers, which would wait to hand results to a build that no longer reads)."""
    os._exit(0)


def _drop_lock_descriptors() -> None:
    """Point inherited descriptors of an index's lock files at /dev/null (in a forked worker).

    A flock belongs to the open file, which fork shares: a worker keeping the descriptor would hold
    the build lock (or a generation's readers lock) for as long as it lives.
    """
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for entry in Path("/proc/self/fd").iterdir():
            try:
                target = os.readlink(entry)
            except OSError:  # the listing's own descriptor, closed by now
                continue
            if Path(target).name in LOCK_FILES:
                os.dup2(null, int(entry.name), inheritable=False)
    finally:
        os.close(null)
