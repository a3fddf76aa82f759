"""Soak test (not in CI): a real uvicorn on 127.0.0.1 under 16 concurrent clients for 60 s.

    .venv/bin/python -m bench.soak                        # builds a small packaged index first
    .venv/bin/python -m bench.soak --index-dir data/index  # or serves an existing one

The clients mix text search (POST and GET), search by image, thumbnails, originals and a small
share of /describe (the language model takes ~0.7 s per call on a CPU); one more client reloads
the index through POST /admin/reload every few seconds. After a warm-up, the measured window
counts requests, 5xx answers (and failed connections, counted as errors) and the growth of the
server's resident memory. Everything is bounded: loops stop at their deadline and the server is
stopped at the end. The last line is `RESULT soak requests=… errors=… rss_growth=…`; the exit
status is 1 when any error was seen.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from app.index import live_path
from bench.server import REPO, memory, serve

QUERIES = (
    "a cat",
    "a cup of coffee",
    "an astronaut",
    "a rocket",
    "a horse",
    "a camera",
    "a motorcycle",
    "stars in the night sky",
    "a red car",
    "a dog on the grass",
)
# Share of each request kind; describe stays small (language model on CPU).
MIX: dict[str, float] = {
    "search": 0.36,
    "search_get": 0.14,
    "search_image": 0.2,
    "thumbnail": 0.2,
    "original": 0.05,
    "describe_id": 0.02,
    "describe_upload": 0.01,
    "health": 0.02,
}


@dataclass
class Tally:
    """Counts and latencies, shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)

    def add(self, kind: str, status: int, seconds: float, failure: str | None = None) -> None:
        """Record one request (status 0: no answer at all)."""
        with self.lock:
            self.statuses[(kind, status)] += 1
            self.latencies[kind].append(seconds)
            if failure is not None and len(self.failures) < 20:
                self.failures.append(failure)

    @property
    def requests(self) -> int:
        """Requests made."""
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        """5xx answers and requests that got no answer."""
        return sum(n for (_, status), n in self.statuses.items() if status >= 500 or status == 0)


def build_demo_index(work: Path) -> tuple[Path, Path]:
    """scikit-image's photos and a packaged-profile index of them, in `work`."""
    from scripts.demo_gallery import save_photos

    photos = work / "gallery"
    count = save_photos(photos)
    print(f"building a packaged index of {count} photos in {work} …", flush=True)
    command = [sys.executable, "-m", "scripts.build_index", "--images", str(photos / "photos")]
    command += ["--index-dir", str(work / "index"), "--workers", "0"]
    subprocess.run(command, cwd=REPO, check=True, timeout=900)
    return work / "index", photos / "photos"


class Clients:
    """The request mix, run by several threads until a deadline."""

    def __init__(self, base: str, ids: list[str], uploads: list[bytes], key: str, seed: int) -> None:
        """Clients of the server at `base`, over its ids, with images to upload and the admin key."""
        self.base, self.ids, self.uploads, self.key, self.seed = base, ids, uploads, key, seed
        self.kinds = list(MIX)
        self.weights = [MIX[kind] for kind in self.kinds]
        self.requests: dict[str, Callable[[httpx.Client, random.Random], httpx.Response]] = {
            "search": lambda c, r: c.post(
                "/search", json={"query": r.choice(QUERIES), "top_k": r.randint(1, 20)}
            ),
            "search_get": lambda c, r: c.get(
                "/search", params={"q": r.choice(QUERIES), "offset": r.randint(0, 5)}
            ),
            "search_image": lambda c, r: c.post("/search/image", files=self._file(r), data={"top_k": "5"}),
            "thumbnail": lambda c, r: c.get(f"/images/{r.choice(self.ids)}/thumbnail"),
            "original": lambda c, r: c.get(f"/images/{r.choice(self.ids)}"),
            "describe_id": lambda c, r: c.post("/describe", json={"image_id": r.choice(self.ids)}),
            "describe_upload": lambda c, r: c.post("/describe", files=self._file(r)),
            "health": lambda c, r: c.get(r.choice(["/healthz", "/readyz", "/metrics"])),
        }

    def _file(self, rng: random.Random) -> dict[str, tuple[str, bytes, str]]:
        """One of the upload images as a multipart field."""
        return {"image": ("upload.jpg", rng.choice(self.uploads), "image/jpeg")}

    def run(self, tally: Tally, number: int, deadline: float) -> None:
        """One client: random requests of the mix until the deadline."""
        rng = random.Random(self.seed * 1000 + number)
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while time.monotonic() < deadline:
                kind = rng.choices(self.kinds, self.weights)[0]
                self._one(tally, kind, partial(self.requests[kind], client, rng))

    def reload(self, tally: Tally, every: float, deadline: float) -> None:
        """The admin: reload the index every `every` seconds until the deadline."""
        with httpx.Client(base_url=self.base, timeout=120, headers={"X-API-Key": self.key}) as client:
            while time.monotonic() + every < deadline:
                time.sleep(every)
                self._one(tally, "reload", partial(client.post, "/admin/reload"))

    @staticmethod
    def _one(tally: Tally, kind: str, call: Callable[[], httpx.Response]) -> None:
        """Make one request and record it."""
        start = time.perf_counter()
        try:
            response = call()
        except httpx.HTTPError as exc:
            tally.add(kind, 0, time.perf_counter() - start, f"{kind}: {type(exc).__name__}: {exc}")
            return
        failure = (
            f"{kind}: {response.status_code} {response.text[:200]}" if response.status_code >= 500 else None
        )
        tally.add(kind, response.status_code, time.perf_counter() - start, failure)


def sample_rss(pid: int, every: float, deadline: float, samples: list[float]) -> None:
    """Resident memory of the server in MB every `every` seconds until the deadline."""
    while time.monotonic() < deadline:
        samples.append(memory(pid)["rss"])
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))


def run_phase(
    clients: Clients,
    count: int,
    seconds: float,
    reload_every: float,
    rss: tuple[int, list[float]] | None = None,
) -> Tally:
    """`count` client threads (plus the reloading admin) for `seconds`; bounded by the deadline."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=clients.run, args=(tally, n, deadline)) for n in range(count)]
    if reload_every > 0:
        threads.append(threading.Thread(target=clients.reload, args=(tally, reload_every, deadline)))
    if rss is not None:
        threads.append(threading.Thread(target=sample_rss, args=(rss[0], 10.0, deadline, rss[1])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return tally


def report(tally: Tally, seconds: float) -> None:
    """Per request kind: count, statuses and latency percentiles."""
    print(f"{'kind':16s} {'count':>6s} {'p50 ms':>8s} {'p95 ms':>8s}  statuses")
    for kind in sorted(tally.latencies):
        times = sorted(tally.latencies[kind])
        p50 = statistics.median(times) * 1000
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))] * 1000
        statuses = {status: n for (k, status), n in sorted(tally.statuses.items()) if k == kind}
        print(f"{kind:16s} {len(times):6d} {p50:8.1f} {p95:8.1f}  {statuses}")
    print(f"throughput: {tally.requests / seconds:.1f} requests/s")
    for failure in tally.failures:
        print(f"error: {failure}")


def main(argv: list[str] | None = None) -> int:
    """Start the server, warm it up, soak it, stop it, print the result."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", type=Path, help="index to serve (default: build a small packaged one)")
    parser.add_argument(
        "--images", type=Path, help="folder of JPEG/PNG uploads (default: the index's photos)"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before measuring")
    parser.add_argument("--reload-every", type=float, default=10.0, help="seconds between reloads (0: none)")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="imgsearch-soak-") as scratch:
        work = Path(scratch)
        if args.index_dir is None:
            index_dir, photos = build_demo_index(work)
        else:
            index_dir, photos = args.index_dir.resolve(), args.images
        key = secrets.token_urlsafe(16)
        with serve(index_dir, {"IMGSEARCH_API_KEY": key}, timeout=args.ready_timeout) as server:
            base, pid = server.base, server.process.pid
            print(f"server {pid} ready on {base}: {server.ready}", flush=True)
            found = httpx.post(f"{base}/search", json={"query": "a photo", "top_k": 100}, timeout=60).json()
            ids = [result["id"] for result in found["results"]]
            folder = photos or live_path(index_dir) / "thumbnails"
            uploads = [
                p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in {".jpg", ".jpeg"}
            ]
            if not ids or not uploads:
                raise RuntimeError(f"nothing to query: {len(ids)} ids, {len(uploads)} upload images")
            clients = Clients(base, ids, uploads[:20], key, args.seed)
            print(f"warm-up: {args.clients} clients for {args.warmup:.0f}s", flush=True)
            warm = run_phase(clients, args.clients, args.warmup, args.reload_every)
            rss_start = memory(pid)["rss"]
            print(f"measuring: {args.clients} clients for {args.duration:.0f}s", flush=True)
            series: list[float] = []
            tally = run_phase(clients, args.clients, args.duration, args.reload_every, (pid, series))
            rss_end = memory(pid)["rss"]
            alive = server.process.poll() is None
    report(tally, args.duration)
    print("rss every 10s (MB): " + " ".join(f"{mb:.0f}" for mb in [*series, rss_end]))
    growth = rss_end - rss_start
    errors = tally.errors + warm.errors + (0 if alive else 1)
    print(
        f"warm-up: {warm.requests} requests, {warm.errors} errors; server alive at the end: {alive}; "
        f"rss {rss_start:.1f} MB → {rss_end:.1f} MB over {args.duration:.0f}s"
    )
    print(f"RESULT soak requests={tally.requests} errors={errors} rss_growth={growth:+.1f}MB")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
