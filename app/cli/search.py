"""`imgsearch search` and `imgsearch describe`: rank the index for words or an image, describe an image."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from app.cli.common import command_settings, fail, non_negative, positive
from app.errors import ImgSearchError
from app.filters import FILTERS, Filter, Filters
from app.options import DATE_SORT_MIN_SCORE, Mode, Sort
from app.settings import Settings
from app.sources import IMAGE_SUFFIXES

if TYPE_CHECKING:  # the model stack loads only when a command needs it: `--help` stays instant
    from app.assembly import ServiceFactory
    from app.service import Hit, Order, SearchRequest, SearchService

PLOT_COLUMNS = 5
INDEX_HELP = "index directory (default: IMGSEARCH_INDEX_DIR or data/index)"


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `imgsearch search`."""
    parser.add_argument(
        "query",
        nargs="?",
        help="what to look for, in words; 'cat + dog - grass' adds and subtracts parts "
        "(the path of an image file searches by that image)",
    )
    parser.add_argument(
        "--image", type=Path, default=None, metavar="FILE", help="find the images that look like this file"
    )
    parser.add_argument("--index-dir", type=Path, default=None, help=INDEX_HELP)
    parser.add_argument("--top-k", type=positive, default=10, help="results to print (default: 10)")
    parser.add_argument("--offset", type=non_negative, default=0, help="results to skip first (default: 0)")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="also save a grid of the result thumbnails"
    )
    parser.add_argument(
        "--mode",
        choices=get_args(Mode),
        default="hybrid",
        help="hybrid (default): meaning and file names, folders, embedded text; semantic; lexical",
    )
    add_order_arguments(parser)
    parser.add_argument(
        "--not",
        action="append",
        dest="exclude",
        default=[],
        metavar="TEXT",
        help="move away from this meaning (repeatable), like '- TEXT' in the query",
    )
    parser.add_argument(
        "--like",
        action="append",
        default=[],
        metavar="ID",
        help="an indexed image's id to look like (repeatable; without words: more like it)",
    )
    parser.add_argument(
        "--no-understand",
        dest="understand",
        action="store_false",
        help="search the words as typed: do not read dates, places and people from them ('a dog in 2018' "
        "is otherwise 'a dog' taken in 2018)",
    )
    group = parser.add_argument_group("filters", "which images may be results (as in GET /search)")
    for spec in FILTERS:
        group.add_argument(spec.flag, dest=spec.name, default=None, help=spec.help, **_option(spec))


def add_order_arguments(parser: argparse.ArgumentParser) -> None:
    """--sort and --min-score: the order of the results and the relevance they must reach."""
    parser.add_argument(
        "--sort",
        choices=get_args(Sort),
        default="relevance",
        help="relevance (default); newest / oldest: by when taken (undated last), among the results "
        "scoring at least --min-score",
    )
    parser.add_argument(
        "--min-score",
        type=unit_interval,
        default=None,
        metavar="SCORE",
        help="keep only results scoring at least this on the 0–1 relevance scale (default: none; "
        f"{DATE_SORT_MIN_SCORE} with a date sort; 0 keeps all)",
    )


def unit_interval(text: str) -> float:
    """argparse type: a number between 0 and 1 (a score on the relevance scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (the relevance scale), not {text}")
    return value


def _option(spec: Filter[Any]) -> dict[str, Any]:
    """How argparse reads a filter's value: a switch, a repeatable option, a number or a text."""
    if spec.value_type is bool:
        return {"action": argparse.BooleanOptionalAction}
    option: dict[str, Any] = {"metavar": spec.metavar}
    if spec.repeatable:
        option["action"] = "append"
    if spec.value_type is int:
        option["type"] = int
    return option


def check_search_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Decide between words and an image before any model loads (exits with status 2 on a bad query)."""
    if args.image is not None:
        if args.query is not None or args.like or args.exclude:
            parser.error("give words to search for (with --not, --like) or --image FILE, not both")
        return
    if args.query is None and args.like:
        return
    if args.query is None:
        parser.error("give words to search for, or --image FILE to search by an image")
    if not args.query.strip():
        parser.error("the query is blank: say what to look for, e.g. imgsearch search 'a red car'")
    candidate = Path(args.query)
    if candidate.suffix.lower() in IMAGE_SUFFIXES:
        if candidate.is_file():
            print(f"{args.query} is an image file: searching for images that look like it", file=sys.stderr)
            args.image, args.query = candidate, None
        else:
            print(f"note: there is no file {args.query}; searching for these words", file=sys.stderr)


def local_file_settings(settings: Settings) -> Settings:
    """The user's own files are trusted like the collection: its pixel limit, not the upload limit."""
    return settings.model_copy(update={"max_image_pixels": settings.max_collection_pixels})


def read_image(path: Path, settings: Settings) -> bytes:
    """The bytes of an image file, checked before any model loads; one-line ImgSearchError otherwise."""
    from app.preprocessing import check_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImgSearchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        check_image(data, settings.max_image_pixels)
    except ImgSearchError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    return data


def search_service(settings: Settings, with_lm: bool = False) -> SearchService:
    """The service over an index with its profile's encoders (and language model when asked for)."""
    from transformers.utils import logging

    from app.assembly import load_service

    transformers_logging: Any = logging  # typed in some transformers releases, not in others
    transformers_logging.disable_progress_bar()  # answers, not loading bars
    return load_service(settings, with_lm=with_lm)


def describe_service(settings: Settings) -> SearchService:
    """The service with the language model, for `imgsearch describe`."""
    return search_service(settings, with_lm=True)


def print_hits(hits: list[Hit], first_rank: int = 1, dated: bool = False) -> None:
    """One line per result: rank, score, id, source (and folded near-duplicates; when `dated`, when taken)."""
    for rank, hit in enumerate(hits, first_rank):
        folded = f"  (+{hit.duplicates} near-duplicate{'s' * (hit.duplicates > 1)})" if hit.duplicates else ""
        if dated:
            taken = hit.metadata.taken_at if hit.metadata is not None else None
            folded += f"  taken {taken.isoformat(timespec='seconds') if taken else 'unknown'}"
        print(f"{rank:3d}  {hit.score:.4f}  {hit.record.id}  {hit.record.source}{folded}")


def plot_hits(hits: list[Hit], service: SearchService, path: Path, title: str, first_rank: int = 1) -> None:
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
        with Image.open(service.thumbnail_path(hit.record)) as thumbnail:
            axis.imshow(np.asarray(thumbnail.convert("RGB")))
        folded = f"  +{hit.duplicates}" if hit.duplicates else ""
        axis.set_title(f"#{rank}  {hit.score:.3f}{folded}", fontsize=10)
        name = hit.record.source if len(hit.record.source) <= 28 else "…" + hit.record.source[-27:]
        axis.text(0.5, -0.03, name, transform=axis.transAxes, ha="center", va="top", fontsize=7)
    if not hits:
        axes.flat[0].text(0.5, 0.5, "no results", ha="center", va="center", transform=axes.flat[0].transAxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def _report(service: SearchService, args: argparse.Namespace, hits: list[Hit]) -> None:
    """Print the results, say when there are none, and plot them when asked."""
    print_hits(hits, args.offset + 1, dated=args.sort != "relevance")
    if not hits:
        where = f"past result {args.offset}" if args.offset else "for this query"
        print(f"no results {where}: the index holds {service.count} images", file=sys.stderr)
    if args.plot is not None:
        title = (
            f"like {args.image.name}"
            if args.image is not None
            else f"“{args.query or ' + '.join(args.like)}”"
        )
        plot_hits(hits, service, args.plot, title, args.offset + 1)
        print(f"saved {len(hits)} thumbnails to {args.plot.resolve()}", file=sys.stderr)


def request_of(args: argparse.Namespace) -> tuple[Filters, Order, SearchRequest | None]:
    """The filters and order of the command line, and the text search it asks for (None: by an image)."""
    from app.query import CompoundQuery
    from app.service import Order, SearchRequest

    filters = Filters.of({spec.flag: getattr(args, spec.name) for spec in FILTERS}, naming="flag")
    order = Order(args.sort, args.min_score)
    if args.image is not None:
        return filters, order, None
    compound = CompoundQuery.build(args.query, args.exclude, args.like)
    request = SearchRequest(compound, filters, args.mode, args.top_k, args.offset, args.understand, order)
    return filters, order, request


def say_understood(understood: dict[str, Any] | None) -> None:
    """One line on stderr saying what was read from the query, when anything was."""
    if not understood or not understood["read"]:
        return
    said = [f"searching '{understood['text']}'"]
    if understood["taken_after"] or understood["taken_before"]:
        said.append(f"taken {understood['taken_after'] or '…'} to {understood['taken_before'] or '…'}")
    if understood["place"]:
        place = understood["place"]
        said.append(f"place {place['name']} ({place['use']})")
    named = [person["name"] for person in understood.get("people") or []]
    if named:
        said.append(f"{'person' if len(named) == 1 else 'people'} {', '.join(named)}")
    notes = "".join(f"; {note}" for note in understood["notes"])
    print(f"read: {', '.join(said)}{notes} (--no-understand: as typed)", file=sys.stderr)


def say_what_filtered(understood: dict[str, Any] | None) -> None:
    """When a search found nothing, say which reading of the query filtered everything out."""
    if not understood or not understood["read"]:
        return
    readings = []
    if understood["taken_after"] or understood["taken_before"]:
        readings.append("the dates")
    place = understood["place"]
    if place and place["use"] == "filter":
        readings.append(f"the place {place['name']}")
    named = [person["name"] for person in understood.get("people") or []]
    if named:
        readings.append(f"the {'person' if len(named) == 1 else 'people'} {', '.join(named)}")
    if readings:
        print(
            f"hint: {' and '.join(readings)} read from the query kept no image; "
            "--no-understand searches the words as typed",
            file=sys.stderr,
        )


def cmd_search(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch search`: print the ranked results of words or an image, optionally plot them."""
    try:
        settings = command_settings(args.index_dir)
        settings = local_file_settings(settings)
        filters, order, request = request_of(args)  # bad dates fail before models load
        image = read_image(args.image, settings) if args.image is not None else None
        service = (factory or search_service)(settings)
        try:
            if request is None:
                hits = service.find_by_image(image or b"", args.top_k, args.offset, filters, order).hits
            else:
                found = service.search(request)
                hits = found.hits
                say_understood(found.understood)
            _report(service, args, hits)
            if not hits and not args.offset:
                say_what_filtered(found.understood if request is not None else None)
        finally:
            service.close()
    except ImgSearchError as exc:
        return fail(exc)
    return 0


def cmd_describe(args: argparse.Namespace, factory: ServiceFactory | None) -> int:
    """`imgsearch describe`: one sentence about an image file and the labels it came from."""
    try:
        settings = command_settings(args.index_dir)
        settings = local_file_settings(settings)
        data = read_image(args.image, settings)
        service = (factory or describe_service)(settings)
        try:
            description = service.describe_upload(data)
        finally:
            service.close()
    except ImgSearchError as exc:
        return fail(exc)
    print(description.text)
    for label, score in description.labels:
        print(f"  {score:.4f}  {label}")
    return 0
