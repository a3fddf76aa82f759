"""The text stage's cost in a build (app/text_stage.py): per picture, whole-build throughput with OCR
on vs off, and the time until search by meaning is served, in one run.

The gallery: text-free pictures of the OCR dev set (scikit-image's photos, then Tux Paint stamps) and
its rendered pictures with text, about one in ten (bench/ocr_set.py). Three measurements:

1. `free_ms` / `text_ms`: app/ocr.py's `TextReader` (one thread, as in a build's workers) on each
   picture, decoded as the stage decodes it — the gate alone for most text-free pictures; `gate_ms`
   the gate alone, and `gate_opened` the text-free pictures it let through to a full read; wall and
   CPU time (`*_cpu_ms`: this thread's, which is what the picture costs on a loaded machine);
2. `build_off_s` / `build_on_s`: whole builds of the gallery with the packaged profile, the same
   number of decode workers, OCR off and on (both stages counted), alternated for `--rounds` rounds;
   `throughput_ratio` = off / on (goal ≥ 0.5);
3. `ready_off_s` / `ready_on_s`: from the build's start until `current` first names a generation,
   i.e. until search by meaning is served (goal: the same with OCR).

    .venv/bin/python -m bench.ocr_stage                # 150 text-free + 16 with text, 2 workers
    .venv/bin/python -m bench.ocr_stage --free 300 --text 30 --rounds 2
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.layout import generation_of
from app.ocr import TextReader
from app.pipeline import Pipeline
from app.preprocessing import decode
from app.registry import make_bridge, prepare
from app.settings import load_settings
from app.sources import FolderSource
from bench.ocr_set import Sample, text_free, write_text_pictures
from scripts.tuxpaint import BENCH_CACHE

log = logging.getLogger("bench.ocr_stage")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--free", type=int, default=150, help="text-free pictures in the gallery")
    parser.add_argument("--text", type=int, default=16, help="pictures with text in the gallery")
    parser.add_argument("--workers", type=int, default=2, help="decode (and read) workers of each build")
    parser.add_argument("--rounds", type=int, default=1, help="OCR off/on build pairs")
    return parser.parse_args(argv)


def gallery(args: argparse.Namespace, folder: Path) -> tuple[list[Sample], list[Sample]]:
    """Copy the text-free pictures and render those with text into `folder`; both lists."""
    rendered = write_text_pictures(args.cache_dir / "ocr-stage-text")
    step = max(1, len(rendered) // max(1, args.text))
    with_text = rendered[::step][: args.text]  # every kind of picture with text
    free = text_free(args.cache_dir)[: args.free]
    for index, sample in enumerate([*free, *with_text]):
        shutil.copy(sample.path, folder / f"{index:04d}-{sample.path.name}")
    return free, with_text


@dataclass
class PerPicture:
    """Milliseconds per picture of TextReader.read and of its gate alone, wall and CPU (one thread: the
    networks run on the calling thread), and how many pictures the gate let through."""

    read: list[float] = field(default_factory=list)
    read_cpu: list[float] = field(default_factory=list)
    gate: list[float] = field(default_factory=list)
    gate_cpu: list[float] = field(default_factory=list)
    opened: int = 0


def per_picture(samples: list[Sample]) -> PerPicture:
    """TextReader (one thread) on each picture, decoded as the stage decodes it."""
    reader = TextReader(threads=1)
    reader.load()
    found = PerPicture()
    for sample in samples:
        image = decode(sample.path)
        wall, cpu = time.perf_counter(), time.thread_time()
        found.opened += reader.has_text(image)
        gate_wall, gate_cpu = time.perf_counter(), time.thread_time()
        reader.read(image)
        found.gate.append((gate_wall - wall) * 1000)
        found.gate_cpu.append((gate_cpu - cpu) * 1000)
        found.read.append((time.perf_counter() - gate_wall) * 1000)
        found.read_cpu.append((time.thread_time() - gate_cpu) * 1000)
    return found


def timed_build(
    pictures: Path, pipeline: Pipeline, workers: int, ocr: bool, out: Path
) -> tuple[float, float]:
    """(seconds until search by meaning is served, seconds of the whole build) of one fresh build."""
    published: list[float] = []
    done = threading.Event()
    started = time.perf_counter()

    def watch() -> None:
        while not done.is_set() and not published:
            if generation_of(out) is not None:
                published.append(time.perf_counter() - started)
            time.sleep(0.005)

    poller = threading.Thread(target=watch, daemon=True)
    poller.start()
    config = BuildConfig(workers=workers, ocr=ocr)
    reader = TextReader(threads=1) if ocr else None
    build_index(FolderSource(pictures), out, pipeline, config, progress=False, reader=reader)
    total = time.perf_counter() - started
    done.set()
    poller.join()
    return (published[0] if published else total), total


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print one RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocr-stage-") as temp:
        pictures = Path(temp) / "gallery"
        pictures.mkdir()
        free, with_text = gallery(args, pictures)
        free_ms, text_ms = per_picture(free), per_picture(with_text)
        log.info("per picture: %d text-free, %d with text", len(free), len(with_text))
        settings = load_settings(device="cpu")
        models = prepare(settings, "packaged", with_lm=False)
        pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for round_ in range(args.rounds):
            for ocr in (False, True):
                out = Path(temp) / f"index-{round_}-{int(ocr)}"
                runs[ocr].append(timed_build(pictures, pipeline, args.workers, ocr, out))
                log.info("round %d, OCR %s: ready %.1fs, build %.1fs", round_, ocr, *runs[ocr][-1])
    ready = {ocr: statistics.median(run[0] for run in runs[ocr]) for ocr in runs}
    build = {ocr: statistics.median(run[1] for run in runs[ocr]) for ocr in runs}
    mean = statistics.mean
    print(
        f"RESULT ocr_stage images={len(free) + len(with_text)} with_text={len(with_text)} "
        f"workers={args.workers} free_ms={mean(free_ms.read):.1f} free_cpu_ms={mean(free_ms.read_cpu):.1f} "
        f"gate_ms={mean(free_ms.gate):.1f} gate_cpu_ms={mean(free_ms.gate_cpu):.1f} "
        f"gate_opened={free_ms.opened}/{len(free)} text_ms={mean(text_ms.read):.0f} "
        f"text_cpu_ms={mean(text_ms.read_cpu):.0f} "
        f"build_off_s={build[False]:.1f} build_on_s={build[True]:.1f} "
        f"throughput_ratio={build[False] / build[True]:.2f} "
        f"ready_off_s={ready[False]:.1f} ready_on_s={ready[True]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
