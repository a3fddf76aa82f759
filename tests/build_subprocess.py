"""A build with the fake models (`python -m tests.build_subprocess`) for tests that kill or race builds.

It prints `encoded batch N` after each batch and, with `--pause-after N`, prints `paused` after
batch N and waits for a line on stdin: a test can then kill it, or start a second build, at a
known point instead of after a guessed delay.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.errors import ImgSearchError
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Pixels
from app.registry import make_bridge
from app.sources import FolderSource
from tests.fakes import fake_models


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--pca-dim", type=int, default=0)
    parser.add_argument(
        "--pause-after", type=int, default=0, help="wait for stdin after this batch (0: never)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep after each batch")
    parser.add_argument("--update", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one build; exit 1 with the error on stderr when it is refused."""
    args = parse_args(argv)
    models = fake_models()
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), args.cache_dir), flip=True)
    encode = pipeline.encode_pixels
    batches = 0

    def observed_encode(pixels: Pixels, label_k: int = 5, project: bool = True) -> Encoded:
        """Encode, report the batch, and pause or slow down as asked."""
        nonlocal batches
        encoded = encode(pixels, label_k, project)
        batches += 1
        print(f"encoded batch {batches}", flush=True)
        if batches == args.pause_after:
            print("paused", flush=True)
            sys.stdin.readline()
        time.sleep(args.delay)
        return encoded

    pipeline.encode_pixels = observed_encode  # type: ignore[method-assign]
    config = BuildConfig(pca_dim=args.pca_dim, batch_size=args.batch_size, workers=0)
    try:
        report = build_index(
            FolderSource(args.images), args.index_dir, pipeline, config, progress=False, update=args.update
        )
    except ImgSearchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"indexed {report.indexed} reused {report.reused} encoded {report.encoded}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
