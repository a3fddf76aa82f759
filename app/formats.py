"""The image formats the project indexes: one row each of Pillow's name, media type and file suffixes.

The folder walk takes files by these suffixes, the metadata stage stores a format under its name
here (a phone's MPO is a JPEG), and the API sends an original with this media type, whatever
Pillow plugins the process has loaded. A new format (HEIC/HEIF, AVIF, JPEG XL, camera RAW) is one
more row, with the decoder that lets Pillow open it.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ImageFormat:
    """One format: how Pillow names it, what it is sent as, which file names hold it."""

    name: str  # Pillow's format name, as the manifest stores it
    media_type: str  # Content-Type of an original in this format
    suffixes: tuple[str, ...]  # lower-case file name endings the folder walk takes, with the dot
    also: tuple[str, ...] = ()  # other names Pillow gives files of this format (stored as `name`)


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif", ".pjpeg", ".pjp", ".mpo"), ("MPO",)),
    ImageFormat("PNG", "image/png", (".png",)),
    ImageFormat("WEBP", "image/webp", (".webp",)),
    ImageFormat("GIF", "image/gif", (".gif",)),
    ImageFormat("BMP", "image/bmp", (".bmp",)),
    ImageFormat("TIFF", "image/tiff", (".tif", ".tiff")),
    ImageFormat("PPM", "image/x-portable-anymap", (".ppm", ".pgm", ".pbm", ".pnm")),
)
_BY_NAME = {name: fmt for fmt in FORMATS for name in (fmt.name, *fmt.also)}
SUFFIXES = frozenset(suffix for fmt in FORMATS for suffix in fmt.suffixes)


def format_of(pillow_name: str | None) -> ImageFormat | None:
    """The row of a format Pillow reported (any case; MPO is JPEG's), None for one not indexed."""
    return _BY_NAME.get((pillow_name or "").upper())


def stored_name(pillow_name: str | None) -> str | None:
    """The name the manifest stores for a format Pillow reported (MPO → JPEG; others unchanged)."""
    found = format_of(pillow_name)
    return found.name if found is not None else pillow_name


def media_type(pillow_name: str | None) -> str:
    """Content-Type of a file in this format (application/octet-stream for one not in the table)."""
    found = format_of(pillow_name)
    return found.media_type if found is not None else UNKNOWN_MEDIA_TYPE
