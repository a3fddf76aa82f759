"""`imgsearch build`: its options, their checks, and the run that turns failures into one line."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from app.cli.common import fail, interrupted, models_loaded
from app.errors import ImgSearchError, ModelUnavailable
from app.milvus import INDEX_TYPES as MILVUS_INDEX_TYPES
from app.pca import DEFAULT_DIM
from app.settings import Profile, Settings, load_settings

if TYPE_CHECKING:
    from app.build import BuildConfig
    from app.faces import FaceReader
    from app.ocr import TextReader
    from app.sources import Source


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a build (shared by `imgsearch build` and `python -m scripts.build_index`)."""
    _add_source_arguments(parser)
    _add_index_arguments(parser)
    _add_scale_arguments(parser)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """What to index: a folder, or a Hugging Face dataset and its columns."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", type=Path, help="folder of images (walked recursively)")
    what.add_argument(
        "--hf-dataset",
        help="Hugging Face dataset: a folder written by save_to_disk, or a name or path for load_dataset "
        "(results show its rows as name[split]#row)",
    )
    parser.add_argument("--split", default="train", help="split of --hf-dataset (default: train)")
    parser.add_argument(
        "--image-column",
        default="image",
        help="column of --hf-dataset that holds the images (default: image)",
    )
    parser.add_argument(
        "--text-column",
        action="append",
        dest="text_columns",
        default=[],
        metavar="C",
        help="column of --hf-dataset whose text (captions, object names) is indexed for lexical search "
        "and shown as metadata (repeat for several)",
    )


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the index goes and how its vectors are made."""
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
        help="store an inverted file for approximate search (auto: from --ann-min images on)",
    )
    parser.add_argument("--ann-min", type=int, default=100_000, help="size from which --ann auto builds one")
    parser.add_argument(
        "--update",
        action="store_true",
        help="reuse the vectors of files already in the index (by sha256), encode new ones, drop deleted "
        "ones; falls back to a full build when the index was built with other settings",
    )
    add_ocr_argument(parser)
    add_faces_argument(parser, drop=True)


def add_faces_argument(parser: argparse.ArgumentParser, drop: bool = False) -> None:
    """--faces, and on a build --no-faces (shared by `imgsearch build` and `imgsearch watch`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--faces",
        action="store_true",
        help="find the faces in pictures and group them into people after search by meaning is served "
        "(off by default: biometric data, kept inside the index; IMGSEARCH_FACES=true does the same; "
        "docs/people.md)",
    )
    if drop:
        group.add_argument(
            "--no-faces",
            action="store_true",
            help="serve the index without the faces it stored and delete its people (names included)",
        )


def face_reader(args: argparse.Namespace, settings: Settings) -> FaceReader | None:
    """The finder of faces, or None when faces are off (the default; --faces or IMGSEARCH_FACES=true
    turn them on, --no-faces off); ModelUnavailable at once, before any work, when dlib's models are
    not installed."""
    if getattr(args, "no_faces", False) or not (args.faces or settings.faces):
        return None
    from app.faces import DetectParams, FaceReader, check_installed

    try:
        check_installed()
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{exc}; or build without --faces") from None
    return FaceReader(DetectParams(detect_side=settings.face_side))


def add_ocr_argument(parser: argparse.ArgumentParser) -> None:
    """--no-ocr (shared by `imgsearch build` and `imgsearch watch`)."""
    parser.add_argument(
        "--no-ocr",
        action="store_true",
        help="do not read the text in pictures (default: read it after search by meaning is served; "
        "IMGSEARCH_OCR=false does the same); a later --update without it reads what is missing",
    )


def text_reader(args: argparse.Namespace, settings: Settings) -> TextReader | None:
    """The reader of the text in pictures, or None when OCR is off (--no-ocr, IMGSEARCH_OCR=false);
    ModelUnavailable at once, before any work, when its networks are not installed."""
    if args.no_ocr or not settings.ocr:
        return None
    from app.ocr import TextReader, model_dir

    try:
        model_dir()
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{exc}; or build without it: --no-ocr") from None
    return TextReader(threads=1)


def _add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Running the build on a Ray cluster and exporting to Milvus (docs/scaling.md)."""
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
    if args.text_columns and not args.hf_dataset:
        parser.error("--text-column needs --hf-dataset (a folder's files carry their own text)")
    if args.milvus_uri is None and (args.milvus_collection != "images" or args.milvus_index != "auto"):
        parser.error("--milvus-collection and --milvus-index need --milvus-uri")


def open_source(args: argparse.Namespace) -> Source:
    """The folder or dataset to index; OSError or ValueError with one line saying what is wrong."""
    from app.sources import FolderSource, HFDatasetSource

    if args.images:
        return FolderSource(args.images)
    try:
        return HFDatasetSource.load(args.hf_dataset, args.split, args.image_column, args.text_columns)
    except (ConnectionError, FileNotFoundError) as exc:
        raise FileNotFoundError(
            f"cannot open the dataset {args.hf_dataset} ({' '.join(str(exc).split())}); give a folder "
            "written by save_to_disk, a local dataset folder, or a dataset in the Hugging Face cache"
        ) from exc


def build_config(args: argparse.Namespace, settings: Settings, ocr: bool, faces: bool) -> BuildConfig:
    """The build's parameters from its options and settings."""
    from app.build import BuildConfig

    config = BuildConfig(
        pca_dim=args.pca_dim,
        pca_centred=args.pca_centred,
        batch_size=args.batch_size,
        max_pixels=settings.max_collection_pixels,
        ann=args.ann,
        ann_min=args.ann_min,
        ocr=ocr,
        faces=faces,
        drop_faces=args.no_faces,
    )
    if args.workers is not None:
        config.workers = args.workers
    return config


def run_build(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run a build; exit status 1 with one clear line on failure."""
    from app.bridge import DEFAULT_TEMPLATES, BridgeParams
    from app.build import build_index
    from app.build_ray import ProfilePipeline, RayEngine
    from app.engines import Engine, LocalEngine
    from app.generations import check_index_dir

    try:
        settings = settings or load_settings()
        source = open_source(args)
        check_index_dir(args.index_dir, source.root)  # before any model loads
        reader, faces = text_reader(args, settings), face_reader(args, settings)
        params = BridgeParams(templates=tuple(args.templates or DEFAULT_TEMPLATES), top_t=args.top_t)
        factory = ProfilePipeline(args.profile, settings, params, flip=not args.no_flip)
        pipeline = factory()
        models_loaded()
        config = build_config(args, settings, reader is not None, faces is not None)
        engine: Engine = (
            RayEngine(factory, args.ray_address, args.ray_workers) if args.engine == "ray" else LocalEngine()
        )
        run = partial(build_index, update=args.update, engine=engine, reader=reader, faces=faces)
        report = run(source, args.index_dir, pipeline, config)
        if args.milvus_uri:
            from app.milvus import export_index

            export_index(args.index_dir, args.milvus_uri, args.milvus_collection, args.milvus_index)
    except (ImgSearchError, OSError, ValueError) as exc:
        return fail(exc)
    except KeyboardInterrupt as exc:
        from app.build import StageInterrupted

        if isinstance(exc, StageInterrupted):
            return interrupted(str(exc))
        return interrupted(f"the build stopped; nothing half-written was left in {args.index_dir}")
    for skipped in report.skipped:
        if "missing" not in skipped:  # those of a format whose plugin is missing: one note per format
            print(f"skipped {skipped['source']}: {skipped['reason']}", file=sys.stderr)
    for note in report.notes:
        print(note, file=sys.stderr)
    read = f"; read the text of {report.text_read}, {report.text_found} with text" if report.text_read else ""
    read += f"; {report.faces_found} faces in {report.faces_read} looked at" if report.faces_read else ""
    print(f"indexed {report.indexed} images into {args.index_dir} ({len(report.skipped)} skipped{read})")
    return 0
