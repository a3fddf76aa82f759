"""Batch build throughput on the Tux Paint stamps: naive loop vs model-only forward vs our build.

The last line also compares the CPU image encoder at int8 and at float32 (`int8_speedup`), timed
alone on the same batches, interleaved, in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.device import resolve_device
from app.encoders.efficientnet import EfficientNetLiteEncoder
from app.pipeline import Pipeline
from app.preprocessing import decode, stack
from app.registry import make_bridge, packaged_image, prepare
from app.settings import Settings
from app.sources import FolderSource
from scripts.tuxpaint import BENCH_CACHE, collect, fetch_stamps, stage

log = logging.getLogger("bench.indexing")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE, help="where the stamps are unpacked")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--naive-limit", type=int, default=200, help="images timed in the naive loop")
    parser.add_argument(
        "--baseline-limit", type=int, default=160, help="images timed through the first build's encoder"
    )
    parser.add_argument(
        "--encoder-limit", type=int, default=256, help="images timed through the int8 and fp32 encoders"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers", type=int, default=None, help="build decoding processes (default: build's)"
    )
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def plain(pipeline: Pipeline, settings: Settings) -> Pipeline:
    """The same pipeline over the plain eager PyTorch models (the same labeller: IMGSEARCH_LABELLER)."""
    encoder = packaged_image(settings, optimize=False)
    encoder.load(pipeline.models.image.device, pipeline.models.image.dtype)
    return Pipeline(dataclasses.replace(pipeline.models, image=encoder), pipeline.bridge, flip=pipeline.flip)


def precise(settings: Settings, precision: str) -> EfficientNetLiteEncoder:
    """The packaged image encoder at one CPU precision, loaded as the build loads it."""
    encoder = packaged_image(settings, precision)  # with its labeller, as the build has it
    device, dtype = resolve_device(settings.device)
    encoder.load(device, dtype)
    return encoder


def naive(pipeline: Pipeline, settings: Settings, files: list[Path]) -> float:
    """The original design's loop: open, preprocess, forward one image at a time; images per second.

    Same outputs as the build (mirrored pass and bridge included), from the plain eager model:
    contiguous tensors, no TorchScript, no parallel decoding.
    """
    loop = plain(pipeline, settings)
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            loop.encode_pixels(stack([loop.preprocess(decode(path))]))
    return len(files) / (time.perf_counter() - start)


def model_only(pipeline: Pipeline, files: list[Path], batch_size: int) -> float:
    """The build's encode step alone on pre-decoded tensors at the build's batch size; images per second."""
    tensors = [pipeline.preprocess(decode(path)) for path in files]
    batches = [stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    pipeline.encode_pixels(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        pipeline.encode_pixels(batch)
    return len(tensors) / (time.perf_counter() - start)


def encoders_only(
    encoders: dict[str, EfficientNetLiteEncoder], files: list[Path], batch_size: int, rounds: int = 3
) -> dict[str, float]:
    """Images per second of each encoder alone (no bridge, no mirrored pass) on the same pre-decoded
    batches, interleaved batch by batch so that a shared machine's load falls on all of them alike;
    the best of `rounds` passes."""
    first = next(iter(encoders.values()))
    tensors = [first.inputs(decode(path)) for path in files]  # both input sizes with a labeller
    batches = [stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    seconds = {name: [0.0] * rounds for name in encoders}
    for encoder in encoders.values():
        encoder.encode(batches[0])  # warm-up
    for number in range(rounds):
        for batch in batches:
            for name, encoder in encoders.items():
                start = time.perf_counter()
                encoder.encode(batch)
                seconds[name][number] += time.perf_counter() - start
    return {name: len(tensors) / min(times) for name, times in seconds.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Stage the images, time the three paths, print the table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = Settings(device=args.device)
    stamps = fetch_stamps(args.cache_dir.expanduser())
    selected = collect(stamps, args.limit)
    models = prepare(settings, "packaged", with_lm=False)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    device = models.image.device
    with tempfile.TemporaryDirectory(prefix="indexing-") as scratch:
        folder = Path(scratch) / "images"
        stage(stamps, selected, folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        log.info("%d images on %s, torch threads %d", len(files), device, torch.get_num_threads())
        naive_ips = naive(pipeline, settings, files[: args.naive_limit])
        log.info("naive: %.1f img/s", naive_ips)
        model_ips = model_only(pipeline, files, args.batch_size)
        log.info("model only: %.1f img/s", model_ips)
        first_ips = model_only(plain(pipeline, settings), files[: args.baseline_limit], args.batch_size)
        log.info("model only, first build's encoder: %.1f img/s", first_ips)
        precisions = {name: precise(settings, name) for name in ("int8", "fp32")}
        alone = encoders_only(precisions, files[: args.encoder_limit], args.batch_size)
        log.info("encoders alone: %s", ", ".join(f"{k} {v:.1f} img/s" for k, v in alone.items()))
        config = BuildConfig(batch_size=args.batch_size, max_pixels=settings.max_image_pixels)
        if args.workers is not None:
            config.workers = args.workers
        start = time.perf_counter()
        report = build_index(FolderSource(folder), Path(scratch) / "index", pipeline, config, progress=False)
        build_ips = (report.encoded + len(report.duplicates)) / (time.perf_counter() - start)
    print(
        f"{len(files)} images ({report.encoded} encoded), device {device}, batch {args.batch_size}, "
        f"{config.workers} workers, torch threads {torch.get_num_threads()}"
    )
    print("| path | img/s |")
    print(f"| (a) naive loop, one image at a time | {naive_ips:.1f} |")
    print(
        f"| (b0) model only, first build's encoder (PyTorch eager, batch {args.batch_size}) "
        f"| {first_ips:.1f} |"
    )
    precision = models.image.precision
    print(f"| (b) model only, batch {args.batch_size}, pre-decoded ({precision}) | {model_ips:.1f} |")
    for name, ips in alone.items():
        print(f"| encoder alone, {name} (ONNX Runtime, no bridge or mirrored pass) | {ips:.1f} |")
    print(f"| (c) our build (read → encode → write) | {build_ips:.1f} |")
    print(f"build stages (s): {report.seconds}")
    print(
        f"RESULT indexing naive_ips={naive_ips:.1f} model_ips={model_ips:.1f} build_ips={build_ips:.1f} "
        f"speedup={build_ips / naive_ips:.2f} of_model={build_ips / model_ips:.2f} "
        f"first_model_ips={first_ips:.1f} precision={precision} "
        f"int8_ips={alone['int8']:.1f} fp32_ips={alone['fp32']:.1f} "
        f"int8_speedup={alone['int8'] / alone['fp32']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
