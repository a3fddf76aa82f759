"""`imgsearch`: build an index, search it, describe an image, serve the API — thin over the app's modules."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.build import add_build_arguments, check_build_arguments, run_build
from app.cli.common import LOG_FORMAT, fail
from app.cli.search import (
    INDEX_HELP,
    add_search_arguments,
    check_search_arguments,
    cmd_describe,
    cmd_search,
    plot_hits,
    print_hits,
    search_service,
)
from app.cli.watch import add_watch_arguments, cmd_watch
from app.errors import BadSetting
from app.settings import load_settings

if TYPE_CHECKING:
    from app.assembly import ServiceFactory

__all__ = [
    "LOG_FORMAT",
    "add_build_arguments",
    "check_build_arguments",
    "main",
    "make_parser",
    "plot_hits",
    "print_hits",
    "run_build",
    "search_service",
]


def cmd_build(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch build`: encode a folder or dataset into an index."""
    return run_build(args)


def cmd_serve(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch serve`: check the settings, then run the API (`app.main:app`) under uvicorn."""
    import uvicorn

    if args.index_dir is not None:
        os.environ["IMGSEARCH_INDEX_DIR"] = str(args.index_dir)
    os.environ["IMGSEARCH_HOST"] = args.host  # the app warns when it is reachable without a read key
    try:
        load_settings()
    except BadSetting as exc:
        return fail(exc)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The `imgsearch` parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="imgsearch", description=__doc__)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{build,search,describe,serve,watch}"
    )

    build = commands.add_parser("build", help="index a folder of images or a Hugging Face dataset")
    add_build_arguments(build)
    build.set_defaults(handler=cmd_build, check=check_build_arguments, subparser=build)

    search = commands.add_parser(
        "search",
        help="print the images that best match words or look like an image file",
        description="Rank the index for words (imgsearch search 'a red car') or an image file "
        "(imgsearch search --image photo.jpg, or simply imgsearch search photo.jpg when that file exists).",
    )
    add_search_arguments(search)
    search.set_defaults(handler=cmd_search, check=check_search_arguments, subparser=search)

    describe = commands.add_parser("describe", help="write one sentence about an image file")
    describe.add_argument("image", type=Path, help="path of an image file")
    describe.add_argument("--index-dir", type=Path, default=None, help=INDEX_HELP)
    describe.set_defaults(handler=cmd_describe)

    serve = commands.add_parser("serve", help="serve the HTTP API and the search page")
    serve.add_argument(
        "--host",
        default=os.environ.get("IMGSEARCH_HOST", "127.0.0.1"),
        help="address to bind (default: IMGSEARCH_HOST or 127.0.0.1, this machine only)",
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--index-dir", type=Path, default=None, help=INDEX_HELP)
    levels = ["critical", "error", "warning", "info", "debug"]
    serve.add_argument("--log-level", default="info", choices=levels)
    serve.set_defaults(handler=cmd_serve)

    watch = commands.add_parser("watch", help="keep an index current while its folder of images changes")
    add_watch_arguments(watch)
    watch.set_defaults(handler=cmd_watch)
    return parser


def main(argv: list[str] | None = None, factory: ServiceFactory | None = None) -> int:
    """Entry point of the `imgsearch` console script; `factory` replaces model loading in tests."""
    parser = make_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = getattr(args, "check", None)
    if check is not None:
        check(args.subparser, args)
    if args.command in {"build", "watch"}:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    elif args.command != "serve":
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    handler: Callable[[argparse.Namespace, ServiceFactory | None], int] = args.handler
    return handler(args, factory)
