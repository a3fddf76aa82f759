"""A build with the fake models (`python -m tests.build_subprocess`) for tests that kill, interrupt or race
builds, or fill their disk.

It prints `encoded batch N` after each batch and, with `--pause-after N`, prints `paused` after
batch N and waits for a line on stdin: a test can then kill it, interrupt it, or start a second
build, at a known point instead of after a guessed delay. `--cli build` (or `watch`) runs the
`imgsearch` command itself over the fake models, as a user would see it; `--fill-after N` fills the
index's disk after batch N, leaving `--leave` bytes free.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from pathlib import Path

from PIL import Image

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.errors import ImgSearchError
from app.ocr import ImageText
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Pixels
from app.registry import make_bridge
from app.sources import FolderSource
from tests.fakes import CountingReader, fake_models

FILLER = ".filler"  # beside the index folder, on its disk


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--pca-dim", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="decoding processes")
    parser.add_argument("--text-dim", type=int, default=64, help="dimension of the fake text space")
    parser.add_argument(
        "--pause-after", type=int, default=0, help="wait for stdin after this batch (0: never)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep after each batch")
    parser.add_argument("--update", action="store_true")
    parser.add_argument("--cli", choices=["build", "watch"], default=None, help="run this imgsearch command")
    parser.add_argument("--fill-after", type=int, default=0, help="fill the disk after this batch (0: never)")
    parser.add_argument("--leave", type=int, default=0, help="bytes --fill-after leaves free")
    parser.add_argument("--ocr", action="store_true", help="with --cli: read the text in pictures too")
    parser.add_argument(
        "--text-pause-after",
        type=int,
        default=0,
        help="with --ocr: a fake reader that waits for stdin after this many pictures (0: the real one)",
    )
    return parser.parse_args(argv)


def fill_disk(index_dir: Path, leave: int) -> None:
    """Fill the disk holding `index_dir` (a file beside it), then free `leave` bytes of it."""
    with (index_dir.parent / FILLER).open("wb", buffering=0) as file:
        try:
            while file.write(b"\0" * 4096):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        file.truncate(max(0, file.tell() - leave))


def observed(pipeline: Pipeline, args: argparse.Namespace) -> None:
    """Make the pipeline report each batch, and pause, slow down or fill the disk as asked."""
    encode = pipeline.encode_pixels
    batches = 0

    def observed_encode(pixels: Pixels, label_k: int = 5, project: bool = True) -> Encoded:
        """Encode, report the batch, and pause, slow down or fill the disk as asked."""
        nonlocal batches
        encoded = encode(pixels, label_k, project)
        batches += 1
        print(f"encoded batch {batches}", flush=True)
        if batches == args.fill_after:
            fill_disk(args.index_dir.resolve(), args.leave)
        if batches == args.pause_after:
            print("paused", flush=True)
            sys.stdin.readline()
        time.sleep(args.delay)
        return encoded

    pipeline.encode_pixels = observed_encode  # type: ignore[method-assign]


class PausingReader(CountingReader):
    """The counting fake reader, which prints `paused` after reading `pause_after` pictures and waits
    for a line on stdin."""

    def __init__(self, pause_after: int) -> None:
        super().__init__()
        self.pause_after = pause_after

    def read(self, image: Image.Image) -> ImageText:
        """Read, then pause when it is time."""
        text = super().read(image)
        if len(self.sizes) == self.pause_after:
            print("paused", flush=True)
            sys.stdin.readline()
        return text


def run_command(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """`imgsearch build` or `imgsearch watch` with the fake pipeline in place of the profile's."""
    import app.build_ray
    from app import cli

    app.build_ray.ProfilePipeline = lambda *_, **__: lambda: pipeline  # type: ignore[assignment,misc]
    if args.text_pause_after:
        from app.cli import build as cli_build

        cli_build.text_reader = lambda *_: PausingReader(args.text_pause_after)  # type: ignore[assignment]
    paths = ["--images", str(args.images), "--index-dir", str(args.index_dir)]
    options = ["--workers", str(args.workers), "--pca-dim", str(args.pca_dim)]
    options += [] if args.ocr else ["--no-ocr"]  # the text stage has tests of its own
    if args.cli == "build":
        options += ["--batch-size", str(args.batch_size), *(["--update"] if args.update else [])]
    return cli.main([args.cli, *paths, *options])


def main(argv: list[str] | None = None) -> int:
    """Run one build; exit 1 with the error on stderr when it is refused."""
    args = parse_args(argv)
    models = fake_models(args.text_dim)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), args.cache_dir), flip=True)
    observed(pipeline, args)
    if args.cli is not None:
        return run_command(args, pipeline)
    config = BuildConfig(pca_dim=args.pca_dim, batch_size=args.batch_size, workers=args.workers)
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
