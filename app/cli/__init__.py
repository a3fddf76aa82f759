"""`imgsearch`: build an index, search it, describe an image, serve the API — thin over the app's modules."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from app.errors import ImgSearchError
from app.milvus import INDEX_TYPES as MILVUS_INDEX_TYPES
from app.pca import DEFAULT_DIM
from app.settings import Profile, Settings

if TYPE_CHECKING:  # the model stack loads only when a command needs it: `--help` stays instant
    from app.api.runtime import ServiceFactory
    from app.index import Index
    from app.service import Hit, SearchService

log = logging.getLogger("imgsearch")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLOT_COLUMNS = 5


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a build (shared by `imgsearch build` and `python -m scripts.build_index`)."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", type=Path, help="folder of images (walked recursively)")
    what.add_argument("--hf-dataset", help="Hugging Face dataset name or local path (datasets.load_dataset)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--profile", choices=get_args(Profile), default="packaged")
    parser.add_argument("--pca-dim", type=int, default=DEFAULT_DIM, help="0 disables PCA")
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
    parser.add_argument(
        "--ann",
        choices=["auto", "always", "never"],
        default="auto",
        help="store an HNSW graph for approximate search (auto: from --ann-min images on)",
    )
    parser.add_argument("--ann-min", type=int, default=100_000, help="size from which --ann auto builds one")
    parser.add_argument(
        "--update",
        action="store_true",
        help="reuse the vectors of files already in the index (by sha256), encode new ones, drop deleted "
        "ones; falls back to a full build when the index was built with other settings",
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where reading and encoding run: this machine, or a Ray cluster (docs/scaling.md)",
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: start one on this machine)"
    )
    parser.add_argument(
        "--ray-workers", type=int, default=None, help="encoding actors (default: one per GPU, else 1)"
    )
    parser.add_argument(
        "--milvus-uri",
        default=None,
        help="after the build, export the vectors to Milvus: a .db file (Milvus Lite) or http(s)://host:port",
    )
    parser.add_argument("--milvus-collection", default="images", help="name of the Milvus collection")
    parser.add_argument(
        "--milvus-index",
        choices=MILVUS_INDEX_TYPES,
        default="auto",
        help="Milvus index type (auto: FLAT below 100,000 vectors, HNSW from there on)",
    )


def check_build_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject option values argparse cannot check by itself (exits with status 2)."""
    if args.pca_dim < 0 or args.batch_size < 1:
        parser.error("--pca-dim must be ≥ 0 and --batch-size ≥ 1")
    if args.templates and not all("{}" in template for template in args.templates):
        parser.error("every --template needs a {} where the label goes")
    if args.ray_workers is not None and args.ray_workers < 1:
        parser.error("--ray-workers must be ≥ 1")
    if args.engine != "ray" and (args.ray_address or args.ray_workers):
        parser.error("--ray-address and --ray-workers need --engine ray")
    if args.milvus_uri is None and (args.milvus_collection != "images" or args.milvus_index != "auto"):
        parser.error("--milvus-collection and --milvus-index need --milvus-uri")


def run_build(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run a build; exit status 1 with one clear line on failure."""
    from app.bridge import DEFAULT_TEMPLATES, BridgeParams
    from app.build import BuildConfig, Engine, LocalEngine, build_index
    from app.build_ray import ProfilePipeline, RayEngine
    from app.sources import FolderSource, HFDatasetSource, Source

    settings = settings or Settings()
    try:
        source: Source = (
            FolderSource(args.images)
            if args.images
            else HFDatasetSource.load(args.hf_dataset, args.split, args.image_column)
        )
        params = BridgeParams(templates=tuple(args.templates or DEFAULT_TEMPLATES), top_t=args.top_t)
        factory = ProfilePipeline(args.profile, settings, params, flip=not args.no_flip)
        pipeline = factory()
        config = BuildConfig(
            pca_dim=args.pca_dim,
            pca_centred=args.pca_centred,
            batch_size=args.batch_size,
            max_pixels=settings.max_image_pixels,
            ann=args.ann,
            ann_min=args.ann_min,
        )
        if args.workers is not None:
            config.workers = args.workers
        engine: Engine = (
            RayEngine(factory, args.ray_address, args.ray_workers) if args.engine == "ray" else LocalEngine()
        )
        report = build_index(source, args.index_dir, pipeline, config, update=args.update, engine=engine)
        if args.milvus_uri:
            from app.milvus import export_index

            export_index(args.index_dir, args.milvus_uri, args.milvus_collection, args.milvus_index)
    except (ImgSearchError, FileNotFoundError, ValueError) as exc:
        logging.getLogger("build_index").error("%s", exc)
        return 1
    for skipped in report.skipped:
        print(f"skipped {skipped['source']}: {skipped['reason']}", file=sys.stderr)
    print(f"indexed {report.indexed} images into {args.index_dir} ({len(report.skipped)} skipped)")
    return 0


def search_service(settings: Settings) -> SearchService:
    """The service over an index with its profile's encoders, without the language model."""
    from app.api.runtime import load_service

    return load_service(settings, with_lm=False)


def print_hits(hits: list[Hit], first_rank: int = 1) -> None:
    """One line per result: rank, score, id, source (and folded near-duplicates)."""
    for rank, hit in enumerate(hits, first_rank):
        folded = f"  (+{hit.duplicates} near-duplicate{'s' * (hit.duplicates > 1)})" if hit.duplicates else ""
        print(f"{rank:3d}  {hit.score:.4f}  {hit.record.id}  {hit.record.source}{folded}")


def plot_hits(hits: list[Hit], index: Index, path: Path, title: str, first_rank: int = 1) -> None:
    """Save a grid of the results' thumbnails, each titled with its rank and score (Agg, no display)."""
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    columns = max(1, min(PLOT_COLUMNS, len(hits)))
    rows = max(1, math.ceil(len(hits) / columns))
    figure = Figure(figsize=(2.4 * columns, 2.6 * rows + 0.5), layout="constrained")
    figure.suptitle(title, fontsize=12)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for rank, (axis, hit) in enumerate(zip(axes.flat, hits, strict=False), first_rank):
        with Image.open(index.thumbnail_path(hit.record)) as thumbnail:
            axis.imshow(np.asarray(thumbnail.convert("RGB")))
        folded = f"  +{hit.duplicates}" if hit.duplicates else ""
        axis.set_title(f"#{rank}  {hit.score:.3f}{folded}", fontsize=10)
        name = hit.record.source if len(hit.record.source) <= 28 else "…" + hit.record.source[-27:]
        axis.text(0.5, -0.03, name, transform=axis.transAxes, ha="center", va="top", fontsize=7)
    if not hits:
        axes.flat[0].text(0.5, 0.5, "no results", ha="center", va="center", transform=axes.flat[0].transAxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def cmd_build(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch build`: encode a folder or dataset into an index."""
    return run_build(args)


def cmd_search(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch search`: print the ranked results of a text query, optionally plot them."""
    settings = _settings(args)
    try:
        service = (factory or search_service)(settings)
        try:
            hits = service.search_text(args.query, args.top_k, args.offset, settings.dedup_threshold)
            print_hits(hits, args.offset + 1)
            if args.plot is not None:
                plot_hits(hits, service.index, args.plot, f"“{args.query}”", args.offset + 1)
                print(f"saved {len(hits)} thumbnails to {args.plot}", file=sys.stderr)
        finally:
            service.index.close()
    except ImgSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_describe(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch describe`: one sentence about an image file and the labels it came from."""
    settings = _settings(args)
    try:
        data = args.image.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.image}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if factory is None:
        from app.api.runtime import load_service

        factory = load_service
    try:
        service = factory(settings)
        try:
            description = service.describe_upload(data)
        finally:
            service.index.close()
    except ImgSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(description.text)
    for label, score in description.labels:
        print(f"  {score:.4f}  {label}")
    return 0


def cmd_serve(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch serve`: run the API (`app.main:app`) under uvicorn."""
    import uvicorn

    if args.index_dir is not None:
        os.environ["IMGSEARCH_INDEX_DIR"] = str(args.index_dir)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the index directory given on the command line."""
    return Settings(index_dir=args.index_dir) if args.index_dir is not None else Settings()


def _positive(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def make_parser() -> argparse.ArgumentParser:
    """The `imgsearch` parser with its four subcommands."""
    parser = argparse.ArgumentParser(prog="imgsearch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{build,search,describe,serve}")
    index_help = "index directory (default: IMGSEARCH_INDEX_DIR or data/index)"

    build = commands.add_parser("build", help="index a folder of images or a Hugging Face dataset")
    add_build_arguments(build)
    build.set_defaults(handler=cmd_build, subparser=build)

    search = commands.add_parser("search", help="print the images that best match a text query")
    search.add_argument("query")
    search.add_argument("--index-dir", type=Path, default=None, help=index_help)
    search.add_argument("--top-k", type=_positive, default=10)
    search.add_argument("--offset", type=_non_negative, default=0)
    search.add_argument("--plot", type=Path, default=None, help="save a PNG grid of the result thumbnails")
    search.set_defaults(handler=cmd_search)

    describe = commands.add_parser("describe", help="write one sentence about an image file")
    describe.add_argument("image", type=Path, help="path of an image file")
    describe.add_argument("--index-dir", type=Path, default=None, help=index_help)
    describe.set_defaults(handler=cmd_describe)

    serve = commands.add_parser("serve", help="serve the HTTP API and the search page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--index-dir", type=Path, default=None, help=index_help)
    levels = ["critical", "error", "warning", "info", "debug"]
    serve.add_argument("--log-level", default="info", choices=levels)
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None, factory: ServiceFactory | None = None) -> int:
    """Entry point of the `imgsearch` console script; `factory` replaces model loading in tests."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "build":
        check_build_arguments(args.subparser, args)
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    elif args.command != "serve":
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    handler: Callable[[argparse.Namespace, ServiceFactory | None], int] = args.handler
    return handler(args, factory)


if __name__ == "__main__":
    sys.exit(main())
