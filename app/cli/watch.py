"""`imgsearch watch`: keep an index current while its folder changes (app/watch.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from app.cli.build import add_faces_argument, add_ocr_argument, face_reader, text_reader
from app.cli.common import fail, interrupted, models_loaded
from app.errors import ImgSearchError
from app.pca import DEFAULT_DIM
from app.settings import Profile, load_settings


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `imgsearch watch`."""
    parser.add_argument("--images", type=Path, required=True, help="folder of images (watched recursively)")
    parser.add_argument("--index-dir", type=Path, required=True, help="the index to keep current")
    parser.add_argument("--profile", choices=get_args(Profile), default="packaged")
    parser.add_argument("--pca-dim", type=int, default=DEFAULT_DIM, help="0 disables PCA")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes per build")
    parser.add_argument(
        "--debounce-ms",
        type=int,
        default=None,
        help="changes this close together make one update (default: 1600)",
    )
    add_ocr_argument(parser)
    add_faces_argument(parser)


def cmd_watch(args: argparse.Namespace, factory: object = None) -> int:
    """Update the index now and after each group of changes, until Ctrl-C (exit status 130)."""
    from app.bridge import BridgeParams
    from app.build import BuildConfig
    from app.build_ray import ProfilePipeline
    from app.generations import check_index_dir
    from app.sources import FolderSource
    from app.watch import DEBOUNCE_MS, Watcher

    try:
        settings = load_settings()
        FolderSource(args.images)  # the folder exists and is a folder
        check_index_dir(args.index_dir, args.images.resolve())  # before any model loads
        reader, faces = text_reader(args, settings), face_reader(args, settings)
        pipeline = ProfilePipeline(args.profile, settings, BridgeParams(), flip=True)()
        models_loaded()
        config = BuildConfig(
            pca_dim=args.pca_dim,
            max_pixels=settings.max_collection_pixels,
            ocr=reader is not None,
            faces=faces is not None,
        )
        if args.workers is not None:
            config.workers = args.workers
        print(f"watching {args.images} for {args.index_dir} (Ctrl-C stops)", flush=True)
        Watcher(args.images, args.index_dir, pipeline, config, reader, faces).run(
            debounce_ms=args.debounce_ms or DEBOUNCE_MS
        )
    except (ImgSearchError, OSError, ValueError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        return interrupted(f"stopped watching {args.images}; nothing half-written left in {args.index_dir}")
    return 0
