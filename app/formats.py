"""The image formats the project indexes: one row each of name, media type, file suffixes and reader.

The folder walk takes files by these suffixes, the metadata stage stores a format under its name
here (a phone's MPO is a JPEG), and the API sends an original with this media type, whatever
Pillow plugins the process has loaded. A format read by a plugin (HEIC/HEIF, JPEG XL, camera RAW)
names the package; without it installed its files are reported as skipped, once per build.
Camera RAW files are read by rawpy, not Pillow, and are chosen by their suffix (most are TIFFs).
Browsers cannot show every format: `/images/{id}/view` renders the others as a JPEG.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

log = logging.getLogger(__name__)

UNKNOWN_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ImageFormat:
    """One format: how it is named, what it is sent as, which file names hold it, what reads it."""

    name: str  # Pillow's format name (ours for camera RAW), as the manifest stores it
    media_type: str  # Content-Type of an original in this format
    suffixes: tuple[str, ...]  # lower-case file name endings the folder walk takes, with the dot
    also: tuple[str, ...] = ()  # other names Pillow gives files of this format (stored as `name`)
    plugin: str | None = None  # the package that reads it; None: Pillow itself
    viewable: bool = True  # browsers show it as it is (else /view sends a JPEG rendition)
    raw: bool = False  # a camera RAW file: read through rawpy, chosen by suffix
    suffix_types: tuple[tuple[str, str], ...] = ()  # a suffix whose files are sent as another type


def _raw(name: str, media_type: str, *suffixes: str) -> ImageFormat:
    """A camera RAW row."""
    return ImageFormat(name, media_type, suffixes, plugin="rawpy", viewable=False, raw=True)


AVIF_PLUGIN = "Pillow with AVIF (11.3 or later)"
FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif", ".pjpeg", ".pjp", ".mpo"), ("MPO",)),
    ImageFormat("PNG", "image/png", (".png",)),
    ImageFormat("WEBP", "image/webp", (".webp",)),
    ImageFormat("GIF", "image/gif", (".gif",)),
    ImageFormat("BMP", "image/bmp", (".bmp",)),
    ImageFormat("TIFF", "image/tiff", (".tif", ".tiff"), viewable=False),  # only Safari shows TIFF
    ImageFormat("PPM", "image/x-portable-anymap", (".ppm", ".pgm", ".pbm", ".pnm"), viewable=False),
    ImageFormat(
        "HEIF",
        "image/heif",
        (".heic", ".heif", ".hif"),
        plugin="pillow-heif",
        viewable=False,
        suffix_types=((".heic", "image/heic"),),
    ),
    ImageFormat("AVIF", "image/avif", (".avif",), plugin=AVIF_PLUGIN),
    ImageFormat("JXL", "image/jxl", (".jxl",), plugin="pillow-jxl-plugin", viewable=False),  # not in Chrome
    _raw("CR2", "image/x-canon-cr2", ".cr2"),
    _raw("CR3", "image/x-canon-cr3", ".cr3"),
    _raw("NEF", "image/x-nikon-nef", ".nef"),
    _raw("ARW", "image/x-sony-arw", ".arw"),
    _raw("DNG", "image/x-adobe-dng", ".dng"),
    _raw("ORF", "image/x-olympus-orf", ".orf"),
    _raw("RW2", "image/x-panasonic-rw2", ".rw2"),
)
_BY_NAME = {name: fmt for fmt in FORMATS for name in (fmt.name, *fmt.also)}
_BY_SUFFIX = {suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes}
SUFFIXES = frozenset(_BY_SUFFIX)


def format_of(pillow_name: str | None) -> ImageFormat | None:
    """The row of a format Pillow reported (any case; MPO is JPEG's), None for one not indexed."""
    return _BY_NAME.get((pillow_name or "").upper())


def format_of_file(name: str | None) -> ImageFormat | None:
    """The row a file name's suffix says (any case), None for a suffix not in the table."""
    return _BY_SUFFIX.get(PurePosixPath(name or "").suffix.lower())


def raw_format(name: str | None) -> ImageFormat | None:
    """The camera RAW row of a file name (`IMG_1.CR2`), None for any other file."""
    found = format_of_file(name)
    return found if found is not None and found.raw else None


def stored_name(pillow_name: str | None) -> str | None:
    """The name the manifest stores for a format Pillow reported (MPO → JPEG; others unchanged)."""
    found = format_of(pillow_name)
    return found.name if found is not None else pillow_name


def media_type(pillow_name: str | None, file_name: str | None = None) -> str:
    """Content-Type of a file in this format (application/octet-stream for one not in the table)."""
    found = format_of(pillow_name)
    if found is None:
        return UNKNOWN_MEDIA_TYPE
    suffix = PurePosixPath(file_name or "").suffix.lower()
    return dict(found.suffix_types).get(suffix, found.media_type)


def viewable(pillow_name: str | None) -> bool:
    """True when browsers show files of this format as they are."""
    found = format_of(pillow_name)
    return found is not None and found.viewable


def _heif() -> None:
    importlib.import_module("pillow_heif").register_heif_opener()


def _jxl() -> None:
    importlib.import_module("pillow_jxl")  # registers its Pillow plugin when imported


def _rawpy() -> None:
    importlib.import_module("rawpy")


def _avif() -> None:
    from PIL import features

    if not features.check("avif"):
        raise ImportError("this Pillow was built without AVIF")


_LOADERS: dict[str, Callable[[], None]] = {
    "pillow-heif": _heif,
    "pillow-jxl-plugin": _jxl,
    "rawpy": _rawpy,
    AVIF_PLUGIN: _avif,
}
_LOADED: dict[str, str | None] = {}  # plugin → None once loaded, else why it is not


def load_plugins() -> None:
    """Load (once) every plugin of the table, registering its Pillow opener; a missing one is noted."""
    for plugin, load in _LOADERS.items():
        if plugin in _LOADED:
            continue
        try:
            load()
            _LOADED[plugin] = None
        except ImportError as exc:
            log.debug("%s not loaded: %r", plugin, exc)
            _LOADED[plugin] = f"{plugin} not installed" if plugin != AVIF_PLUGIN else f"needs {plugin}"


def unavailable(fmt: ImageFormat) -> str | None:
    """Why this process cannot read the format ("pillow-heif not installed"), None when it can."""
    if fmt.plugin is None:
        return None
    load_plugins()
    return _LOADED.get(fmt.plugin)
