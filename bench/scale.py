"""Build throughput: the local engine against the Ray engine with 1 and 2 actors (packaged profile).

    .venv/bin/python -m bench.scale                 # every captioned Tux Paint stamp (~540 images)
    .venv/bin/python -m bench.scale --limit 100     # a quick run

Each build indexes the same staged folder end to end, start-up included: the Ray runs start a
one-machine cluster of `--cpus` CPUs, load the models in every actor and stop the cluster again,
as `scripts/build_index.py --engine ray` does. Throughput is indexed images per second of wall
time; the overhead is how much longer a build takes than the local one. "1st batch" is the time
until the first encoded batch reached the write stage (for Ray: the cluster, the actors and their
models); "then img/s" counts the images of the later batches over the time from the first batch to
the last, the rate once everything runs. Every Ray index is checked against the local one (same
ids in the same order, smallest vector cosine). The last line is
`RESULT scale local_ips=… ray1_ips=… ray2_ips=… ray1_overhead=… ray2_overhead=…`.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.build_ray import ProfilePipeline, RayEngine
from app.engines import EncodedBatch, Engine, LocalEngine
from app.index import Index
from app.pipeline import Pipeline
from app.settings import Settings
from app.sources import FolderSource, Source
from scripts.tuxpaint import BENCH_CACHE, PACKAGE, collect, fetch_stamps, stage

log = logging.getLogger("bench.scale")


@dataclass(frozen=True)
class Run:
    """One build: images indexed, wall seconds, the build's stage timings and when batches arrived."""

    name: str
    images: int
    seconds: float
    stages: dict[str, float]
    first: float  # seconds from the start until the first encoded batch arrived
    steady: float  # images per second from the first batch to the last
    min_cosine: float | None = None

    @property
    def ips(self) -> float:
        """Indexed images per second of wall time."""
        return self.images / self.seconds


class Timed:
    """An engine wrapper that notes when each batch reaches the write stage, and its size."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.arrivals: list[tuple[float, int]] = []

    def batches(
        self,
        source: Source,
        pipeline: Pipeline,
        config: BuildConfig,
        known: frozenset[str],
        timings: dict[str, float],
    ) -> Generator[EncodedBatch, None, None]:
        """The wrapped engine's batches, timed."""
        inner = self.engine.batches(source, pipeline, config, known, timings)
        try:
            for encoded, entries in inner:
                self.arrivals.append((time.perf_counter(), len(entries)))
                yield encoded, entries
        finally:
            inner.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE, help="where the .deb is unpacked")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1), help="CPUs given to Ray")
    args = parser.parse_args(argv)
    if (args.limit is not None and args.limit < 1) or args.batch_size < 1 or args.cpus < 1:
        parser.error("--limit, --batch-size and --cpus must be ≥ 1")
    return args


def build(name: str, folder: Path, index_dir: Path, pipeline: Pipeline, engine: Engine, batch: int) -> Run:
    """Build the folder with one engine and time it."""
    timed = Timed(engine)
    started = time.perf_counter()
    config = BuildConfig(batch_size=batch)
    report = build_index(FolderSource(folder), index_dir, pipeline, config, progress=False, engine=timed)
    seconds = time.perf_counter() - started
    first, last = timed.arrivals[0][0], timed.arrivals[-1][0]
    later = sum(rows for _, rows in timed.arrivals[1:])
    steady = later / (last - first) if last > first else float("nan")
    log.info("%s: %d images in %.1fs (%s)", name, report.indexed, seconds, report.seconds)
    return Run(name, report.indexed, seconds, report.seconds, first - started, steady)


def print_table(runs: list[Run]) -> None:
    """One line per build; overheads against the first (local) run."""
    local = runs[0]
    print(
        f"{'engine':<8} {'images':>6} {'seconds':>8} {'img/s':>6} {'overhead':>9} {'1st batch':>9} "
        f"{'then img/s':>10} {'min cos':>8}  stages (s)"
    )
    for run in runs:
        overhead = f"{100 * (run.seconds / local.seconds - 1):+.0f}%" if run is not local else "-"
        cosine = f"{run.min_cosine:.5f}" if run.min_cosine is not None else "-"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in run.stages.items() if k != "total")
        timing = f"{run.seconds:>8.1f} {run.ips:>6.1f} {overhead:>9} {run.first:>9.1f} {run.steady:>10.1f}"
        print(f"{run.name:<8} {run.images:>6} {timing} {cosine:>8}  {stages}")


def min_cosine(reference: Path, other: Path) -> float:
    """Smallest row cosine between two indexes' vectors, after checking they list the same ids."""
    a, b = Index(reference), Index(other)
    try:
        rows = list(range(a.count))
        if [r.id for r in a.records(rows)] != [r.id for r in b.records(rows)]:
            raise SystemExit(f"{other} does not list the ids of {reference} in the same order")
        x, y = np.asarray(a.vectors, dtype=np.float32), np.asarray(b.vectors, dtype=np.float32)
        return float(((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))).min())
    finally:
        a.close()
        b.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Stage the stamps, build them with each engine, print the table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = Settings()
    stamps = fetch_stamps(args.cache_dir.expanduser())
    selected = collect(stamps, args.limit)
    factory = ProfilePipeline("packaged", settings, BridgeParams())
    pipeline = factory()  # the driver's copy (the local engine encodes with it; Ray actors build their own)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="scale-") as scratch:
        folder = Path(scratch) / "images"
        stage(stamps, selected, folder)
        local_dir = Path(scratch) / "local"
        runs.append(build("local", folder, local_dir, pipeline, LocalEngine(), args.batch_size))
        for workers in (1, 2):
            name, index_dir = f"ray{workers}", Path(scratch) / f"ray{workers}"
            engine = RayEngine(factory, workers=workers, num_cpus=args.cpus)
            run = build(name, folder, index_dir, pipeline, engine, args.batch_size)
            runs.append(replace(run, min_cosine=min_cosine(local_dir, index_dir)))
    print(f"data: {PACKAGE}, {len(selected)} images; packaged profile, batch {args.batch_size}")
    decoders = BuildConfig().workers
    print(
        f"this machine: {os.cpu_count()} CPUs; Ray given {args.cpus}; local engine: {decoders} decode workers"
    )
    print_table(runs)
    local = runs[0]
    ray1, ray2 = runs[1], runs[2]
    print(
        f"RESULT scale local_ips={local.ips:.1f} ray1_ips={ray1.ips:.1f} ray2_ips={ray2.ips:.1f} "
        f"ray1_overhead={100 * (ray1.seconds / local.seconds - 1):+.0f}% "
        f"ray2_overhead={100 * (ray2.seconds / local.seconds - 1):+.0f}%"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
