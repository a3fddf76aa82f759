"""A collection at scale: filtered and hybrid search through the service, over up to 1 M images.

The index: a `packaged` index of the Tux Paint stamps (real models, PCA to 256 dimensions) grown to
N rows by bench.scaled_index (synthetic vectors with the mean and covariance of the real 256-d
index, as bench.search draws them; synthetic visual features; the ANN file), plus a synthetic catalog:
every row gets a folder (`year/place`), a file name of two ImageNet class names, a date spread over
sixteen years, a format, a size and, for a third of them, a GPS position. A date filter then passes
a known share of the rows, and query words match file names as they would in a named collection.

Measured through `SearchService.search` (the request path minus HTTP), with each query text encoded
once beforehand (the pipeline's LRU cache; what encoding costs is printed apart):
- filtered semantic search at each selectivity (`taken_after` passing 50 / 10 / 1 / 0.1 % of the
  rows): p50 / p99 ms and recall@10 against the same service over exact search;
- hybrid (file names and folders fused with the vectors), without a filter and with the 10 % one;
- the first request under a filter not seen before (its mask over every row; the last few are kept).

The index's arrays are read once before timing, so that they sit in the page cache as on a server
that has been serving for a while.

    .venv/bin/python -m bench.search --filtered --sizes 1000000 --work-dir /tmp/collection-bench
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from app import index as ix, lexical
from app.assembly import service_over
from app.catalog import TABLE
from app.filters import Filters
from app.index import Index
from app.labels import imagenet_labels
from app.layout import ANN_FILE
from app.lexical import LexicalDoc
from app.metadata import COLUMNS, ImageMetadata, table_sql
from app.options import Mode, SearchOptions
from app.pipeline import Models
from app.query import CompoundQuery
from app.registry import prepare
from app.service import SearchRequest, SearchService
from app.settings import Settings
from app.vectors import build_ann
from bench.scaled_index import scaled_index
from bench.server import REPO
from bench.synthetic import recall, timed
from scripts.tuxpaint import BENCH_CACHE, collect, fetch_stamps

log = logging.getLogger("bench.collection")

SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
_PLACE_TEXT = (
    "paris berlin rome madrid lisbon vienna prague oslo dublin athens cairo tokyo kyoto seoul lima "
    "quito bogota havana boston denver seattle chicago toronto sydney perth auckland nairobi accra "
    "garden beach mountains lake forest farm harbour island desert village"
)
PLACES = tuple(_PLACE_TEXT.split())
FIRST_DAY = datetime(2010, 1, 1)
SPAN_S = 16 * 365 * 86_400
CHUNK = 50_000  # catalog rows written at a time


def _names(rng: np.random.Generator, count: int) -> list[str]:
    """File names of two ImageNet class names each, as people write them (kebab, snake, camel)."""
    vocabulary = [name.replace(" ", "-") for name in imagenet_labels()]
    pairs = rng.integers(0, len(vocabulary), (count, 2))
    return [f"{vocabulary[a]}_{vocabulary[b]}_{i}.jpg" for i, (a, b) in enumerate(pairs)]


def _metadata(rng: np.random.Generator, first: int, count: int) -> list[ImageMetadata]:
    """Synthetic metadata of rows first … first + count."""
    names = _names(rng, count)
    places = rng.integers(0, len(PLACES), count)
    seconds = rng.integers(0, SPAN_S, count)
    formats = rng.choice(["JPEG", "PNG", "WEBP"], count, p=[0.8, 0.15, 0.05])
    located = rng.random(count) < 0.3
    found: list[ImageMetadata] = []
    for i in range(count):
        taken = FIRST_DAY + timedelta(seconds=int(seconds[i]))
        found.append(
            ImageMetadata(
                folder=f"{taken.year}/{PLACES[places[i]]}",
                name=names[i].replace("_" + str(i), "_" + str(first + i)),
                format=str(formats[i]),
                width=4000,
                height=3000,
                taken_at=taken,
                taken_at_source="exif_original",
                latitude=48.85 if located[i] else None,
                longitude=2.35 if located[i] else None,
            )
        )
    return found


def synthetic_catalog(index_dir: Path, seed: int = 7) -> None:
    """Add the metadata and lexical tables of app/catalog.py to a grown index, with synthetic rows."""
    manifest = index_dir / ix.MANIFEST
    connection = sqlite3.connect(manifest)
    try:
        ids = [image_id for (image_id,) in connection.execute("SELECT id FROM images ORDER BY row")]
        rng = np.random.default_rng(seed)
        names = ", ".join(["id", *(name for name, _ in COLUMNS)])
        marks = ", ".join("?" * (len(COLUMNS) + 1))
        with connection:
            connection.execute(table_sql(TABLE))
            lexical.create_tables(connection)
            for first in range(0, len(ids), CHUNK):
                stored = _metadata(rng, first, min(CHUNK, len(ids) - first))
                connection.executemany(
                    f"INSERT INTO {TABLE} ({names}) VALUES ({marks})",
                    [(ids[first + i], *meta.to_row()) for i, meta in enumerate(stored)],
                )
                lexical.insert(connection, (LexicalDoc.of(first + i, meta) for i, meta in enumerate(stored)))
                log.info("catalog: %d of %d rows", first + len(stored), len(ids))
    finally:
        connection.close()


def base_index(work: Path) -> Path:
    """A packaged index of the Tux Paint stamps under opaque names: enough images for PCA to 256
    dimensions, the default of any collection past 256 images (the demo's 7 photos keep 384)."""
    index_dir = work / "index"
    if not (index_dir / ix.CURRENT).exists():
        stamps = fetch_stamps(BENCH_CACHE)
        folder = work / "images"
        for number, stamp in enumerate(collect(stamps, None)):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stamps / stamp.path, folder / f"{number:04d}.png")
        command = [sys.executable, "-m", "scripts.build_index", "--images", str(folder)]
        subprocess.run([*command, "--index-dir", str(index_dir)], cwd=REPO, check=True, timeout=1800)
    return index_dir


def collection_index(work: Path, count: int) -> Path:
    """The grown index with its catalog and ANN file in `work` (made once, then reused; a collection
    made when the ANN file was an HNSW graph gets the inverted file the build now writes)."""
    target = work / f"collection-{count}"
    done, kind = target / "collection.done", target / "ann.kind"
    if not done.is_file():
        started = time.perf_counter()
        scaled_index(base_index(work / "base"), target, count, thumbnails=False, features=True, ann=True)
        synthetic_catalog(target)
        done.write_text(f"{time.perf_counter() - started:.0f} s\n")
        kind.write_text("ivf\n")
    if not kind.is_file():
        seconds = build_ann(np.load(target / ix.VECTORS, mmap_mode="r"), target / ANN_FILE)
        kind.write_text(f"ivf ({seconds:.0f} s to build)\n")
    return target


def warm(index_dir: Path) -> None:
    """Read the index's arrays once, so that they sit in the page cache as on a server that has been
    serving for a while (the first pass over a cold 3.5 GB would time the disk, not the search)."""
    for path in [*sorted(index_dir.glob("*.npy")), index_dir / ANN_FILE]:
        with path.open("rb") as handle:
            while handle.read(64 << 20):
                pass


def _new_filter_ms(service: SearchService, count: int = 10) -> float:
    """p50 ms of the first request under a filter not seen before: the mask over every row (then kept)."""
    times: list[float] = []
    for i in range(count):
        filters = _date_filter(0.05 + 0.04 * i)
        started = time.perf_counter()
        service.catalog.selection(filters)
        times.append(time.perf_counter() - started)
    return float(np.percentile(np.asarray(times) * 1000, 50))


def _service(index_dir: Path, settings: Settings, models: Models, exact: bool) -> SearchService:
    """The service over the index, searched through its ANN file or exactly."""
    options = SearchOptions(ann_threshold=10**12 if exact else 1)
    return service_over(Index(index_dir, options), models, settings.cache_dir, dedup_threshold=0.97)


def _searcher(service: SearchService, mode: Mode, filters: Filters) -> Callable[[str], list[str]]:
    """One request: the ids of the first page."""

    def search(text: str) -> list[str]:
        request = SearchRequest(query=CompoundQuery.build(text), filters=filters, mode=mode, top_k=10)
        return [hit.record.id for hit in service.search(request).hits]

    return search


def _date_filter(share: float) -> Filters:
    """A `taken_after` bound that passes about `share` of the rows (dates are uniform over the span)."""
    bound = FIRST_DAY + timedelta(seconds=int(SPAN_S * (1 - share)))
    return Filters.parse(taken_after=bound.isoformat(timespec="seconds"))


def _encode_ms(services: Sequence[SearchService], texts: Sequence[str]) -> float:
    """p50 ms of encoding a query text (into every service's cache; the first one's time)."""
    times: list[float] = []
    for text in texts:
        started = time.perf_counter()
        services[0].pipeline.encode_query(text)
        times.append(time.perf_counter() - started)
        for other in services[1:]:
            other.pipeline.encode_query(text)
    return float(np.percentile(np.asarray(times) * 1000, 50))


def measure(index_dir: Path, queries: int, settings: Settings) -> dict[str, float]:
    """Filtered semantic search at each selectivity (ANN against exact) and hybrid search."""
    models = prepare(settings, "packaged", with_lm=False)
    warm(index_dir)
    graph = _service(index_dir, settings, models, exact=False)
    exact = _service(index_dir, settings, models, exact=True)
    rng = np.random.default_rng(3)
    labels = list(imagenet_labels())
    texts = [f"a photo of a {labels[i]}" for i in rng.choice(len(labels), queries, replace=False)]
    names = [labels[i] for i in rng.choice(len(labels), queries, replace=False)]
    figures = {"n": float(graph.count), "encode_p50": _encode_ms([graph, exact], texts + names)}
    graph.catalog.selection(_date_filter(0.5))  # the filter columns, read once per index (timed apart)
    figures["new_filter_p50"] = _new_filter_ms(graph)
    try:
        for share in SELECTIVITIES:
            filters = _date_filter(share)
            found, p50, p99 = timed(_searcher(graph, "semantic", filters), texts)
            truth, exact_p50, _ = timed(_searcher(exact, "semantic", filters), texts)
            passing = graph.search(SearchRequest(CompoundQuery.build(texts[0]), filters, "semantic")).total
            key = f"{share:g}"
            figures |= {f"rows_{key}": float(passing), f"p50_{key}": p50, f"p99_{key}": p99}
            figures |= {f"recall_{key}": recall(found, truth), f"exact_p50_{key}": exact_p50}
            log.info("selectivity %s: %s", key, {k: v for k, v in figures.items() if k.endswith(key)})
        for label, filters in (("hybrid", Filters()), ("hybrid_filtered", _date_filter(0.1))):
            _, p50, p99 = timed(_searcher(graph, "hybrid", filters), names)
            figures |= {f"{label}_p50": p50, f"{label}_p99": p99}
        found, figures["semantic_p50"], _ = timed(_searcher(graph, "semantic", Filters()), texts)
        truth, figures["semantic_exact_p50"], _ = timed(_searcher(exact, "semantic", Filters()), texts)
        figures["semantic_recall"] = recall(found, truth)
    finally:
        graph.close()
        exact.close()
    return figures


def report(figures: dict[str, float]) -> None:
    """Print the tables and the RESULT line."""
    print(f"\n{int(figures['n']):,} images; ms per request through SearchService.search, one at a time")
    print("| share passing | rows | ANN + filter p50 / p99 ms | recall@10 vs exact filtered | exact p50 ms |")
    print("|---|---|---|---|---|")
    for share in SELECTIVITIES:
        key = f"{share:g}"
        cells = [f"{share:.1%}", f"{int(figures[f'rows_{key}']):,}"]
        cells += [f"{figures[f'p50_{key}']:.1f} / {figures[f'p99_{key}']:.1f}"]
        cells += [f"{figures[f'recall_{key}']:.3f}", f"{figures[f'exact_p50_{key}']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    cells = [f"{figures['semantic_p50']:.1f}", f"{figures['semantic_recall']:.3f}"]
    cells += [f"{figures['semantic_exact_p50']:.1f}"]
    print(f"| none (semantic) | {int(figures['n']):,} | " + " | ".join(cells) + " |")
    print(f"hybrid (names + vectors) p50 / p99: {figures['hybrid_p50']:.1f} / {figures['hybrid_p99']:.1f} ms")
    print(
        f"hybrid with the 10 % date filter p50 / p99: {figures['hybrid_filtered_p50']:.1f} / "
        f"{figures['hybrid_filtered_p99']:.1f} ms"
    )
    print(f"query encoding (MiniLM, once per distinct text, then cached) p50: {figures['encode_p50']:.1f} ms")
    fresh = figures["new_filter_p50"]
    print(f"a filter not seen before (its mask over every row, then kept) p50: {fresh:.1f} ms")
    worst = max(figures[f"p50_{share:g}"] for share in SELECTIVITIES)
    lowest = min(figures[f"recall_{share:g}"] for share in SELECTIVITIES)
    print(
        f"RESULT collection n={int(figures['n'])} semantic_p50_ms={figures['semantic_p50']:.1f} "
        f"semantic_recall10={figures['semantic_recall']:.3f} filtered_p50_ms_max={worst:.1f} "
        f"filtered_recall10_min={lowest:.3f} hybrid_p50_ms={figures['hybrid_p50']:.1f} "
        f"hybrid_filtered_p50_ms={figures['hybrid_filtered_p50']:.1f} "
        f"encode_p50_ms={figures['encode_p50']:.1f} new_filter_ms={figures['new_filter_p50']:.1f}"
    )


def run(size: int, queries: int, work: Path) -> dict[str, float]:
    """Make (or reuse) the collection of `size` images in `work`, measure it, print the report."""
    figures = measure(collection_index(work, size), queries, Settings())
    report(figures)
    return figures
