"""Text in pictures: word recall, false text and cost of OCR engines on the dev set of bench/ocr_set.py.

Each picture is decoded as the build decodes it (app.preprocessing.decode: upright RGB, short side
≥ 512 px when the file has it), then read. `word_recall`: share of the words drawn on the pictures with
text that the read text holds (both cut into words and folded as the lexical index does,
app.lexical.words; counted with multiplicity). `false_text`: share of the text-free pictures for which
anything is left to index. Times are per picture, reading only (decoding excluded), in CPU time of the
process (all its threads: on a machine shared with other work, wall time says more about the others;
it is printed too). With one thread per engine, CPU time is what one core spends: N build workers on
N cores read N pictures in that time.

    .venv/bin/python -m bench.ocr                                   # the product's reader (app/ocr.py)
    .venv/bin/python -m bench.ocr --engine ppocr --engine tesseract --threads 2 --sweep

Engines: `ppocr` (app.ocr.TextReader), `rapidocr` (the `rapidocr_onnxruntime` package's own pipeline,
`RapidOCR()`, when it can be imported: it needs pyclipper and shapely besides OpenCV) and `tesseract`
(`tesserocr` with Debian's `tesseract-ocr-eng` data, fetched with apt-get download into the bench
cache, when `tesserocr` can be imported). `--sweep` prints recall and false text for other thresholds
of line confidence, computed from the same run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.lexical import words
from app.ocr import ReaderParams, TextReader, is_noise
from app.preprocessing import decode
from bench.ocr_set import Sample, samples
from scripts.tuxpaint import BENCH_CACHE, fetch_package

log = logging.getLogger("bench.ocr")

Lines = list[tuple[str, float]]  # a picture's lines as read, each with its confidence in [0, 1]
Engine = Callable[[Image.Image], Lines]
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Reading:
    """One engine's reading of one picture."""

    sample: Sample
    lines: Lines
    seconds: float  # CPU time of the process (every thread), reading only
    gate_seconds: float | None = None  # the gate alone, where the engine has one
    gate_open: bool | None = None  # whether the gate saw text
    wall: float = 0.0  # wall-clock time, reading only


def ppocr(threads: int, params: ReaderParams) -> tuple[Engine, Callable[[Image.Image], bool]]:
    """app.ocr's reader, every line kept (the bench applies the threshold), and its gate."""
    reader = TextReader(replace(params, min_confidence=0.0), threads=threads)
    reader.load()

    def read(image: Image.Image) -> Lines:
        return [(line.text, line.confidence) for line in reader.read(image).lines]

    return read, reader.has_text


def rapidocr(threads: int) -> Engine:
    """The rapidocr_onnxruntime package's own pipeline (its resizing, angle classifier, thresholds)."""
    module: Any = importlib.import_module("rapidocr_onnxruntime")
    engine = module.RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def read(image: Image.Image) -> Lines:
        result, _ = engine(np.asarray(image)[:, :, ::-1])
        return [(text, float(score)) for _, text, score in result or []]

    return read


def tesseract(threads: int, cache_dir: Path) -> Engine:
    """Tesseract 5 (LSTM) through tesserocr with Debian's English data; lines and their confidences."""
    os.environ["OMP_THREAD_LIMIT"] = str(threads)
    tesserocr: Any = importlib.import_module("tesserocr")
    root = fetch_package("tesseract-ocr-eng", cache_dir)
    tessdata = next(root.rglob("eng.traineddata")).parent
    api = tesserocr.PyTessBaseAPI(path=str(tessdata), lang="eng", psm=tesserocr.PSM.AUTO)
    level = tesserocr.RIL.TEXTLINE

    def read(image: Image.Image) -> Lines:
        api.SetImage(image)
        api.Recognize()
        lines: Lines = []
        for item in tesserocr.iterate_level(api.GetIterator(), level):
            try:
                text = " ".join(item.GetUTF8Text(level).split())
            except RuntimeError:  # "No text returned": a page without any line
                break
            if text:
                lines.append((text, item.Confidence(level) / 100))
        return lines

    return read


def run(
    engine: Engine, dev: list[Sample], gate: Callable[[Image.Image], bool] | None = None
) -> list[Reading]:
    """Read every picture (decoded first, untimed); time the reading and, for text-free ones, the gate."""
    engine(Image.new("RGB", (320, 240), "white"))  # warm-up
    readings: list[Reading] = []
    for sample in dev:
        image = decode(sample.path)
        gate_seconds = gate_open = None
        if gate is not None:
            start = time.process_time()
            gate_open = gate(image)
            gate_seconds = time.process_time() - start
        start, wall = time.process_time(), time.perf_counter()
        lines = engine(image)
        seconds, wall = time.process_time() - start, time.perf_counter() - wall
        readings.append(Reading(sample, lines, seconds, gate_seconds, gate_open, wall))
    return readings


def found(sample: Sample, text: str) -> tuple[int, int]:
    """(words drawn that the text holds, words drawn), folded and counted as the lexical index does."""
    drawn = Counter(words(" ".join(sample.words)))
    read = Counter(words(text))
    return sum((drawn & read).values()), sum(drawn.values())


@dataclass(frozen=True)
class Scores:
    """What one engine achieved at one confidence threshold."""

    recall: float
    false_text: float
    by_kind: dict[str, float]


def score(readings: list[Reading], threshold: float) -> Scores:
    """Word recall on the pictures with text and false-text rate on the others, at `threshold`."""
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    false = free = 0
    for reading in readings:
        kept = "\n".join(
            text for text, confidence in reading.lines if not is_noise(text, confidence, threshold)
        )
        if reading.sample.has_text:
            hit, total = found(reading.sample, kept)
            hits[reading.sample.kind] += hit
            totals[reading.sample.kind] += total
        else:
            free += 1
            false += bool(kept.strip())
    by_kind = {kind: hits[kind] / totals[kind] for kind in sorted(totals)}
    return Scores(sum(hits.values()) / max(1, sum(totals.values())), false / max(1, free), by_kind)


def costs(readings: list[Reading]) -> dict[str, float]:
    """CPU milliseconds per picture: all, text-free, with text, the gate alone on text-free ones; wall
    milliseconds per picture."""

    def mean_ms(values: list[float]) -> float:
        return 1000 * float(np.mean(values)) if values else float("nan")

    gates = [r.gate_seconds for r in readings if r.gate_seconds is not None and not r.sample.has_text]
    return {
        "all": mean_ms([r.seconds for r in readings]),
        "free": mean_ms([r.seconds for r in readings if not r.sample.has_text]),
        "text": mean_ms([r.seconds for r in readings if r.sample.has_text]),
        "gate": mean_ms(gates),
        "wall": mean_ms([r.wall for r in readings]),
    }


def report(name: str, readings: list[Reading], threshold: float, sweep: bool) -> None:
    """Print the engine's figures (and its sweep of thresholds)."""
    scores, ms = score(readings, threshold), costs(readings)
    kinds = " ".join(f"{kind}={value:.3f}" for kind, value in scores.by_kind.items())
    print(
        f"{name}: word_recall={scores.recall:.3f} false_text={scores.false_text:.3f} "
        f"ms_per_image={ms['all']:.1f} ms_text_free={ms['free']:.1f} ms_with_text={ms['text']:.1f} "
        f"gate_ms={ms['gate']:.1f} wall_ms_per_image={ms['wall']:.1f} "
        f"(min confidence {threshold}; recall by kind: {kinds})"
    )
    opened = [r for r in readings if r.gate_open is not None]
    if opened:
        rate = {
            flag: np.mean([r.gate_open for r in opened if r.sample.has_text is flag])
            for flag in (True, False)
        }
        print(
            f"  {name} gate opens for {rate[True]:.3f} of the pictures with text, "
            f"{rate[False]:.3f} of the others"
        )
    if sweep:
        for other in THRESHOLDS:
            swept = score(readings, other)
            print(
                f"  {name} min_confidence={other:.2f}: "
                f"recall={swept.recall:.3f} false_text={swept.false_text:.3f}"
            )
    missed = [
        r
        for r in readings
        if not r.sample.has_text and any(not is_noise(t, c, threshold) for t, c in r.lines)
    ]
    for reading in missed:
        print(f"  {name} false text in {reading.sample.path.name}: {reading.lines}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="append", choices=["ppocr", "rapidocr", "tesseract"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of each engine")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--limit", type=int, default=None, help="first N text-free pictures only (smoke run)")
    parser.add_argument("--sweep", action="store_true", help="also print other confidence thresholds")
    parser.add_argument("--gate-side", type=int, default=ReaderParams.gate_side)
    parser.add_argument("--gate-threshold", type=float, default=ReaderParams.gate_threshold)
    parser.add_argument("--read-side", type=int, default=ReaderParams.read_side)
    parser.add_argument("--tesseract-confidence", type=float, default=0.6)
    parser.add_argument("--verbose", action="store_true", help="print every picture's reading")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each engine; the RESULT line is the product's reader (ppocr)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    dev = samples(args.cache_dir)
    with_text = [sample for sample in dev if sample.has_text]
    free = [sample for sample in dev if not sample.has_text][: args.limit]
    dev = with_text + free
    print(f"OCR dev set: {len(with_text)} pictures with text, {len(free)} without; {args.threads} thread(s)")
    params = ReaderParams(
        gate_side=args.gate_side, gate_threshold=args.gate_threshold, read_side=args.read_side
    )
    result = None
    for name in args.engine or ["ppocr"]:
        if name == "ppocr":
            engine, gate = ppocr(args.threads, params)
            readings, threshold = run(engine, dev, gate), params.min_confidence
            result = readings
        else:
            try:
                other = (
                    rapidocr(args.threads) if name == "rapidocr" else tesseract(args.threads, args.cache_dir)
                )
            except ImportError as exc:  # the comparison engines are not the project's dependencies
                print(f"{name}: skipped, it cannot be imported here ({exc})")
                continue
            readings = run(other, dev)
            threshold = params.min_confidence if name == "rapidocr" else args.tesseract_confidence
        if args.verbose:
            for reading in readings:
                print(f"  {name} {reading.sample.path.name}: {reading.lines}")
        report(name, readings, threshold, args.sweep)
    if result is not None:
        scores, ms = score(result, params.min_confidence), costs(result)
        print(
            f"RESULT ocr word_recall={scores.recall:.3f} false_text={scores.false_text:.3f} "
            f"ms_per_image={ms['all']:.1f} gate_ms_text_free={ms['gate']:.1f} "
            f"ms_text_free={ms['free']:.1f} ms_with_text={ms['text']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
