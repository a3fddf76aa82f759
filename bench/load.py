"""Service under load: 1, 4, 16 concurrent HTTP clients against uvicorn on 127.0.0.1 over a 10k index.

    .venv/bin/python -m bench.load            # builds a small packaged index, grows it to 10k rows
    .venv/bin/python -m bench.load --catalog --propagation open --settle 30   # names, lending at open

`--catalog` gives the grown index its catalog (hybrid search fuses names, pictures borrow words),
`--propagation build|open|off` stores the lending, leaves it to the service's opening, or serves
bench/unlent.py; `--settle` waits after the first search, so that what the server loads after
/readyz (the language model) does not run beside the first level.

Each concurrency level sends a fixed count of `/search` requests with queries not seen before (the
query-embedding cache cannot help), then the same queries again (cache hits), then thumbnails.
Afterwards the same index is opened in-process to split a search into text encoding, vector search
and manifest lookup. Bounded: fixed request counts, a timeout per request, the server is stopped.
Last line: `RESULT load search_p50_c1_ms=… search_p99_c1_ms=… … errors=…`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np

from app.labels import imagenet_labels, readable_label
from app.layout import FEATURES, MANIFEST
from bench.scaled_index import scaled_index
from bench.server import serve
from bench.soak import build_demo_index

Request = Callable[[httpx.Client, int], httpx.Response]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", type=Path, help="small built index to grow (default: build one)")
    parser.add_argument("--size", type=int, default=10_000, help="rows of the served index")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=150, help="requests per endpoint and level")
    parser.add_argument(
        "--propagation",
        choices=("build", "open", "off"),
        default="build",
        help="with --catalog, build: the borrowed words stored in the index as a build stores them; open: "
        "not stored (an index built before builds stored them: the service computes them when it opens "
        "it); off: serve bench/unlent.py's app, where no picture borrows words (app/propagation.py)",
    )
    parser.add_argument(
        "--catalog",
        action="store_true",
        help="give the grown index its catalog (names, lexical tables, borrowed words) so that hybrid "
        "search fuses names and propagation runs; needs the photos (--photos, or the default build)",
    )
    parser.add_argument("--photos", type=Path, help="the folder --index-dir was built from (--catalog)")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait after the first search, before the first level (what the server loads in "
        "the background after /readyz, the language model among it, then no longer runs beside it)",
    )
    return parser.parse_args(argv)


def queries() -> list[str]:
    """Distinct, plausible text queries: one per ImageNet class."""
    return [f"a photo of a {readable_label(label)}" for label in imagenet_labels()]


def run_level(base: str, clients: int, count: int, request: Request) -> tuple[float, float, float, int]:
    """`count` requests spread over `clients` threads: (qps, p50 ms, p99 ms, errors)."""
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(first: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for number in range(first, count, clients):
                start = time.perf_counter()
                try:
                    ok = request(client, number).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    times.append(elapsed)
                    errors[0] += not ok

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(times) * 1000
    return count / wall, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), errors[0]


def stage_split(index_dir: Path, texts: list[str]) -> dict[str, float]:
    """Mean milliseconds per search stage, in-process, over queries new to the cache."""
    from app import ranking
    from app.assembly import load_service
    from app.settings import Settings

    service = load_service(Settings(index_dir=index_dir, device="cpu"), with_lm=False)
    totals = {"text encoding": 0.0, "vector search": 0.0, "manifest lookup": 0.0}
    for text in texts:
        start = time.perf_counter()
        query = service.pipeline.encode_query(text)
        encoded = time.perf_counter()
        groups = ranking.rank(service.index, query.vector, 10, 0, visual=query.visual, threshold=0.97)
        searched = time.perf_counter()
        service.index.records([g.row for g in groups])
        totals["text encoding"] += encoded - start
        totals["vector search"] += searched - encoded
        totals["manifest lookup"] += time.perf_counter() - searched
    service.index.close()
    return {k: 1000 * v / len(texts) for k, v in totals.items()}


def add_catalog(index_dir: Path, photos: Path | None, lending: bool) -> None:
    """The catalog tables of a grown index (its rows' files read again from `photos`; half the synthetic
    rows under a camera's names, so that they borrow) as a build writes them, with the borrowed words
    (app/propagation.py) when `lending`."""
    from app import catalog
    from app.index import Index
    from app.sources import FolderSource

    if photos is None:
        raise SystemExit("--catalog needs --photos with --index-dir")
    index = Index(index_dir)
    try:
        records = index.records(list(range(index.count)))
    finally:
        index.close()
    real = len({record.sha256 for record in records})
    for row in range(real, len(records), 2):  # half the synthetic rows named as a camera names them
        records[row] = replace(records[row], source=f"DCIM/IMG_{row:05d}.JPG")
    started = time.perf_counter()
    catalog.write(index_dir / MANIFEST, records, FolderSource(photos), index_dir)
    print(f"catalog of {len(records):,} rows written in {time.perf_counter() - started:.1f}s", flush=True)
    if lending:
        started = time.perf_counter()
        lent = catalog.write_lending(index_dir / MANIFEST, np.load(index_dir / FEATURES, mmap_mode="r"))
        print(f"{lent:,} rows borrow words: {time.perf_counter() - started:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Serve a grown index, load it at each concurrency, print tables and the RESULT line."""
    args = parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    texts = queries()
    needed = args.requests * len(levels)
    if needed + 100 > len(texts):
        raise SystemExit(f"--requests × levels must stay under {len(texts) - 100} distinct queries")
    results: dict[str, tuple[float, float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="imgsearch-load-") as scratch:
        work = Path(scratch)
        small, photos = (args.index_dir.resolve(), args.photos) if args.index_dir else build_demo_index(work)
        index_dir = scaled_index(small, work / "scaled", args.size)
        if args.catalog:
            add_catalog(index_dir, photos, lending=args.propagation == "build")
        app = "bench.unlent:app" if args.propagation == "off" else "app.main:app"
        with serve(index_dir, app=app) as server:
            print(f"server ready in {server.ready_s:.1f}s: {server.ready}", flush=True)
            base = server.base
            started = time.perf_counter()  # the first search waits for what the service computes at open
            answer = httpx.get(f"{base}/search", params={"q": "a photo", "top_k": 100}, timeout=600)
            first_ms = 1000 * (time.perf_counter() - started)
            print(f"first search {first_ms:.0f} ms", flush=True)
            first = answer.json()["results"]
            time.sleep(args.settle)
            ids = [r["id"] for r in first] + [f"{row:016x}" for row in range(len(first), args.size)]
            for n, clients in enumerate(levels):
                batch = texts[n * args.requests : (n + 1) * args.requests]

                def search(client: httpx.Client, i: int, batch: list[str] = batch) -> httpx.Response:
                    return client.post("/search", json={"query": batch[i], "top_k": 10})

                def thumb(client: httpx.Client, i: int) -> httpx.Response:
                    return client.get(f"/images/{ids[(i * 7919) % len(ids)]}/thumbnail")

                results[f"search_c{clients}"] = run_level(base, clients, args.requests, search)
                results[f"cached_c{clients}"] = run_level(base, clients, args.requests, search)
                results[f"thumbnail_c{clients}"] = run_level(base, clients, args.requests, thumb)
        stages = stage_split(index_dir, texts[needed : needed + 100])
    print(f"\n{args.size:,}-row index, {args.requests} requests per row, 2 CPU cores")
    print("| endpoint | clients | QPS | p50 ms | p99 ms | errors |")
    for name, (qps, p50, p99, errors) in results.items():
        kind, level = name.rsplit("_c", 1)
        label = {"search": "/search (new query)", "cached": "/search (cached query)"}.get(kind, "thumbnail")
        print(f"| {label} | {level} | {qps:.1f} | {p50:.1f} | {p99:.1f} | {errors} |")
    total = sum(stages.values())
    print("\nin-process split of one uncached search (mean ms, share):")
    for stage, ms in stages.items():
        print(f"| {stage} | {ms:.2f} | {100 * ms / total:.0f} % |")
    errors = sum(r[3] for r in results.values())
    c1, top = results.get("search_c1"), max(levels)
    line = f"RESULT load size={args.size} catalog={args.catalog} propagation={args.propagation} "
    line += f"first_search_ms={first_ms:.0f} settle_s={args.settle:g} "
    if c1:
        line += f"search_p50_c1_ms={c1[1]:.1f} search_p99_c1_ms={c1[2]:.1f} "
    line += (
        f"search_qps_c{top}={results[f'search_c{top}'][0]:.1f} "
        f"thumb_qps_c{top}={results[f'thumbnail_c{top}'][0]:.1f} "
        f"encode_share={stages['text encoding'] / total:.2f} errors={errors}"
    )
    print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
