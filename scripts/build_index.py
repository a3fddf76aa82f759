"""Build an index from a folder of images or a Hugging Face dataset: read → encode → write."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.bridge import DEFAULT_TEMPLATES, BridgeParams
from app.build import BuildConfig, build_index
from app.errors import ImgSearchError
from app.pipeline import Pipeline
from app.registry import PROFILES, make_bridge, prepare
from app.settings import Settings
from app.sources import FolderSource, HFDatasetSource, Source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", type=Path, help="folder of images (walked recursively)")
    what.add_argument("--hf-dataset", help="Hugging Face dataset name or local path (datasets.load_dataset)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="packaged")
    parser.add_argument("--pca-dim", type=int, default=128, help="0 disables PCA")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: up to 2)")
    parser.add_argument("--pca-centred", action="store_true", help="subtract the mean before projecting")
    parser.add_argument("--top-t", type=int, default=0, help="keep only the T most likely labels (0: all)")
    parser.add_argument(
        "--template",
        action="append",
        dest="templates",
        help="prompt template for label names, with {} for the label (repeat; default: 7 templates)",
    )
    parser.add_argument("--no-flip", action="store_true", help="skip mirrored test-time augmentation")
    args = parser.parse_args(argv)
    if args.pca_dim < 0 or args.batch_size < 1:
        parser.error("--pca-dim must be ≥ 0 and --batch-size ≥ 1")
    if args.templates and not all("{}" in template for template in args.templates):
        parser.error("every --template needs a {} where the label goes")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run a build; exit status 1 with one clear line on failure."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = Settings()
    try:
        source: Source = (
            FolderSource(args.images)
            if args.images
            else HFDatasetSource.load(args.hf_dataset, args.split, args.image_column)
        )
        params = BridgeParams(templates=tuple(args.templates or DEFAULT_TEMPLATES), top_t=args.top_t)
        models = prepare(settings, args.profile, with_lm=False)
        pipeline = Pipeline(models, make_bridge(models, params, settings.cache_dir), flip=not args.no_flip)
        config = BuildConfig(
            pca_dim=args.pca_dim,
            pca_centred=args.pca_centred,
            batch_size=args.batch_size,
            max_pixels=settings.max_image_pixels,
        )
        if args.workers is not None:
            config.workers = args.workers
        report = build_index(source, args.index_dir, pipeline, config, params)
    except (ImgSearchError, FileNotFoundError, ValueError) as exc:
        logging.getLogger("build_index").error("%s", exc)
        return 1
    for skipped in report.skipped:
        print(f"skipped {skipped['source']}: {skipped['reason']}", file=sys.stderr)
    print(f"indexed {report.indexed} images into {args.index_dir} ({len(report.skipped)} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
