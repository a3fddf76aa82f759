"""Describe latency through the service on a slice of the description dev set, A/B interleaved so both
columns see the same load: the upload path with its torch steps on one thread (as served) or on the
process's threads, and text mode with the language model on one thread (as served) or on the process's.

`python -m bench.describe_latency [--pictures 36] [--queries 15]`; `RESULT describe-latency {...}` last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import app.encoders.base as encoders_base
import app.service as service_module
from app.assembly import service_over
from app.index import Index
from app.registry import prepare
from app.settings import Settings
from bench.describe_dev import QUERIES, dev_set
from bench.describe_run import _write_set
from scripts.tuxpaint import BENCH_CACHE


def _timed(call: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def measure(files: list[tuple[str, str]], queries: list[str], scratch: Path) -> dict[str, float]:
    """p50 ms per path and thread setting, and the load average's range meanwhile."""
    images = scratch / "images"
    images.mkdir()
    for path, _ in files:
        shutil.copyfile(path, images / Path(path).name)
    command = [sys.executable, "-m", "scripts.build_index", "--images", str(images)]
    subprocess.run([*command, "--index-dir", str(scratch / "index")], check=True, stdout=subprocess.DEVNULL)
    settings = Settings()
    service = service_over(Index(scratch / "index"), prepare(settings, "packaged"), settings.cache_dir)
    served = encoders_base.torch_on_one_thread
    ms: dict[str, list[float]] = {}
    loads: list[float] = []
    jobs: list[tuple[str, Callable[[], object]]] = [
        ("upload", partial(service.describe_upload, Path(p).read_bytes())) for p, _ in files
    ]
    jobs += [("text", partial(service.describe_query, q)) for q in queries]
    for path, job in jobs:
        for threads, context in (("1 thread", served), ("2 threads", contextlib.nullcontext)):
            for module in (service_module, encoders_base):
                setattr(module, "torch_on_one_thread", context)  # noqa: B010
            ms.setdefault(f"{path} {threads}", []).append(_timed(job))
        loads.append(os.getloadavg()[0])
    for module in (service_module, encoders_base):
        setattr(module, "torch_on_one_thread", served)  # noqa: B010
    service.close()
    figures = {key: round(statistics.median(values), 1) for key, values in ms.items()}
    return {**figures, "load_min": min(loads), "load_max": max(loads)}


def main(argv: list[str]) -> int:
    """Describe a slice of the dev set (photos first, then stamps) and the first queries; print p50s."""
    parser = argparse.ArgumentParser(prog="bench.describe_latency")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--pictures", type=int, default=36)
    parser.add_argument("--queries", type=int, default=15)
    args = parser.parse_args(argv)
    items = dev_set(args.cache_dir)
    files = _write_set(items, args.cache_dir.expanduser() / "describe-dev")
    half = args.pictures // 3
    picked = files[:half] + files[60 : 60 + args.pictures - half]  # photos and made pictures, then stamps
    with tempfile.TemporaryDirectory(prefix="describe-latency-") as scratch:
        figures = measure(picked, list(QUERIES[: args.queries]), Path(scratch))
    print(f"pictures={len(picked)} queries={args.queries} cpus={os.cpu_count()}")
    print("RESULT describe-latency " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
