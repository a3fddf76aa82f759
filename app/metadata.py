"""Stage 1b: what one image file says about itself — folder, name, size, date, camera, place and text.

Read at build time from the picture Pillow has already opened (headers and metadata segments only: no
pixels are decoded here), so it costs nothing beyond the decode the build does anyway. Every source is
read on its own and a broken tag is skipped, never raised: a file with garbage EXIF still gets its
name, folder and size.

Wiring: after the manifest is written, app/catalog.py reads each indexed file's headers with
`read_file_metadata` (a dataset's stored original with `read_bytes_metadata`, plus its
`--text-column` text through `with_text`) and writes `to_row()` into the `metadata` table of
`manifest.sqlite` (`COLUMNS`) and the same images into the lexical tables (`app.lexical`); the
service reads them back with `from_row` for results, `/images/{id}/metadata`, `/folders` and the
filters of `app.filters`.
"""

from __future__ import annotations

import io
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar, get_args

from PIL import Image, ImageFile, IptcImagePlugin

from app import formats
from app.camera_raw import raw_exif, raw_size
from app.formats import stored_name
from app.places import Place, place_at

log = logging.getLogger(__name__)
T = TypeVar("T")
formats.load_plugins()  # HEIC/HEIF and JPEG XL headers open through Pillow once their plugins are registered

TakenAtSource = Literal["exif_original", "exif", "mtime"]
SQLValue = str | int | float | None

IFD_EXIF, IFD_GPS = 0x8769, 0x8825
TAG_DESCRIPTION, TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, TAG_DATETIME = 0x010E, 0x010F, 0x0110, 0x0112, 0x0132
TAG_DATETIME_ORIGINAL, TAG_XMP = 0x9003, 0x02BC
XP_TITLE, XP_COMMENT, XP_KEYWORDS, XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
IPTC_OBJECT_NAME, IPTC_KEYWORDS, IPTC_HEADLINE, IPTC_CAPTION = (2, 5), (2, 25), (2, 105), (2, 120)
NS_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
NS_DC = "{http://purl.org/dc/elements/1.1/}"
NS_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

MAX_XMP_BYTES = 4 << 20  # an XMP packet larger than this is not read
MAX_TEXT_CHARS = 2000  # each title, description or keyword is cut to this length
MAX_KEYWORDS = 200
# Descriptions cameras write by default: they describe the camera, not the picture.
CAMERA_BOILERPLATE = frozenset(
    {
        "olympus digital camera",
        "sony dsc",
        "digital camera",
        "konica minolta digital camera",
        "minolta digital camera",
        "default",
        "exif_jpeg_picture",
        "<kdc>",
        "image",
    }
)

# Column name → SQLite type of the manifest's metadata table, in `to_row` order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("folder", "TEXT NOT NULL"),
    ("name", "TEXT NOT NULL"),
    ("format", "TEXT"),
    ("width", "INTEGER NOT NULL"),
    ("height", "INTEGER NOT NULL"),
    ("taken_at", "TEXT"),
    ("taken_at_source", "TEXT"),
    ("camera_make", "TEXT"),
    ("camera_model", "TEXT"),
    ("latitude", "REAL"),
    ("longitude", "REAL"),
    ("title", "TEXT"),
    ("description", "TEXT"),
    ("keywords", "TEXT NOT NULL"),
)


@dataclass(frozen=True)
class ImageMetadata:
    """The stored metadata of one image; `taken_at` is the camera's local time, without a zone."""

    folder: str  # POSIX path of the folder relative to the collection's root; "" at the root
    name: str  # file name, with its extension
    format: str | None  # Pillow's format name (JPEG, PNG, WEBP…)
    width: int  # upright size, EXIF orientation applied
    height: int
    taken_at: datetime | None = None
    taken_at_source: TakenAtSource | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    latitude: float | None = None  # decimal degrees, north positive
    longitude: float | None = None  # decimal degrees, east positive
    title: str | None = None  # distinct titles of every source, one per line
    description: str | None = None  # distinct descriptions of every source, one per line
    keywords: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_gps(self) -> bool:
        """True when the file carries a position."""
        return self.latitude is not None and self.longitude is not None

    @property
    def place(self) -> Place | None:
        """Where it was taken, named from its GPS position (app/places.py); None without a position."""
        return place_at(self.latitude, self.longitude)

    @property
    def text(self) -> str:
        """All the text the file carries, one item per line (what the lexical index reads)."""
        return "\n".join([*filter(None, (self.title, self.description)), *self.keywords])

    def with_text(self, descriptions: Iterable[str] = (), keywords: Iterable[str] = ()) -> ImageMetadata:
        """A copy with more text (a dataset's caption or object-name columns: `--text-column`)."""
        texts = _Texts()
        texts.descriptions = self.description.splitlines() if self.description else []
        texts.keywords = list(self.keywords)
        texts.add(texts.descriptions, descriptions)
        texts.add(texts.keywords, keywords)
        return replace(
            self, description=texts.joined(texts.descriptions), keywords=tuple(texts.keywords[:MAX_KEYWORDS])
        )

    def to_row(self) -> tuple[SQLValue, ...]:
        """SQLite values in `COLUMNS` order."""
        taken = self.taken_at.isoformat(timespec="seconds") if self.taken_at else None
        return (
            self.folder,
            self.name,
            self.format,
            self.width,
            self.height,
            taken,
            self.taken_at_source,
            self.camera_make,
            self.camera_model,
            self.latitude,
            self.longitude,
            self.title,
            self.description,
            json.dumps(list(self.keywords), ensure_ascii=False),
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ImageMetadata:
        """Inverse of `to_row`."""
        values = dict(zip((name for name, _ in COLUMNS), row, strict=True))
        source = values["taken_at_source"]
        return cls(
            folder=values["folder"],
            name=values["name"],
            format=values["format"],
            width=int(values["width"]),
            height=int(values["height"]),
            taken_at=datetime.fromisoformat(values["taken_at"]) if values["taken_at"] else None,
            taken_at_source=source if source in get_args(TakenAtSource) else None,
            camera_make=values["camera_make"],
            camera_model=values["camera_model"],
            latitude=values["latitude"],
            longitude=values["longitude"],
            title=values["title"],
            description=values["description"],
            keywords=tuple(json.loads(values["keywords"] or "[]")),
        )


def table_sql(table: str = "metadata") -> str:
    """CREATE TABLE statement of the manifest's metadata table (one row per image id)."""
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    return f"CREATE TABLE {table} (id TEXT PRIMARY KEY, {columns})"


def read_metadata(image: Image.Image, source: str, mtime: float | None = None) -> ImageMetadata:
    """Metadata of `image` (as `Image.open` returned it) found at relative path `source`; never raises.

    `mtime` (seconds since the epoch) is the date used when the file has no EXIF date.
    """
    exif = _guarded(lambda: _exif(image), Image.Exif())
    width, height = image.size
    turned = _guarded(lambda: int(exif.get(TAG_ORIENTATION, 1)), 1) in {5, 6, 7, 8}
    if turned and image.format != "TIFF":  # Pillow already reports a TIFF's size upright
        width, height = height, width
    texts = _Texts()
    _guarded(lambda: texts.add_xmp(_xmp_packet(image)), None)
    _guarded(lambda: texts.add_iptc(image), None)
    # a phone's multi-picture MPO is a JPEG to its owner
    return _described(exif, texts, source, mtime, (width, height, stored_name(image.format)))


def read_raw_metadata(data: bytes, source: str, mtime: float | None, fmt: str) -> ImageMetadata:
    """Metadata of a camera RAW file's bytes: its TIFF structure's EXIF and XMP, rawpy's size."""
    exif = _guarded(lambda: raw_exif(data), Image.Exif())
    width, height = raw_size(data)
    texts = _Texts()
    _guarded(lambda: texts.add_xmp(_as_bytes(exif.get(TAG_XMP))), None)
    return _described(exif, texts, source, mtime, (width, height, fmt))


def _described(
    exif: Image.Exif, texts: _Texts, source: str, mtime: float | None, shape: tuple[int, int, str | None]
) -> ImageMetadata:
    """The metadata from a file's EXIF, the texts gathered so far and its (width, height, format)."""
    path = PurePosixPath(source.replace("\\", "/"))
    folder = "" if str(path.parent) == "." else str(path.parent)
    taken_at, taken_source = _taken_at(exif, mtime)
    gps = _guarded(lambda: _gps(exif.get_ifd(IFD_GPS)), None)
    _guarded(lambda: texts.add_exif(exif), None)
    return ImageMetadata(
        folder=folder,
        name=path.name,
        format=shape[2],
        width=shape[0],
        height=shape[1],
        taken_at=taken_at,
        taken_at_source=taken_source,
        camera_make=_guarded(lambda: _clean(exif.get(TAG_MAKE)), None),
        camera_model=_guarded(lambda: _clean(exif.get(TAG_MODEL)), None),
        latitude=gps[0] if gps else None,
        longitude=gps[1] if gps else None,
        title=texts.joined(texts.titles),
        description=texts.joined(texts.descriptions),
        keywords=tuple(texts.keywords[:MAX_KEYWORDS]),
    )


def read_file_metadata(path: Path, root: Path) -> ImageMetadata:
    """Metadata of the image file `path` inside the collection folder `root` (headers only, no decode)."""
    mtime = path.stat().st_mtime
    source = path.relative_to(root).as_posix()
    raw = formats.raw_format(path.name)
    if raw is not None:
        return read_raw_metadata(path.read_bytes(), source, mtime, raw.name)
    with Image.open(path) as image:
        return read_metadata(image, source, mtime)


def read_bytes_metadata(data: bytes, source: str, mtime: float | None = None) -> ImageMetadata:
    """Metadata of an image's bytes (headers only, no decode); raises what `Image.open` raises."""
    with Image.open(io.BytesIO(data)) as image:
        return read_metadata(image, source, mtime)


def _guarded(read: Callable[[], T], default: T) -> T:
    """`read()`, or `default` when the file's metadata makes it fail in any way."""
    try:
        return read()
    except Exception as exc:  # a broken tag must never cost the image its place in the index
        log.debug("metadata skipped: %r", exc)
        return default


def _exif(image: Image.Image) -> Image.Exif:
    """The image's EXIF without decoding pixels (Pillow loads a whole PNG to look for a late eXIf)."""
    if image.format == "PNG" and "exif" not in image.info:
        return Image.Exif()
    return image.getexif()


def _taken_at(exif: Image.Exif, mtime: float | None) -> tuple[datetime | None, TakenAtSource | None]:
    """EXIF DateTimeOriginal, else EXIF DateTime, else the file's modification time (local time)."""
    original = _guarded(lambda: _exif_date(exif.get_ifd(IFD_EXIF).get(TAG_DATETIME_ORIGINAL)), None)
    if original is None:  # some writers put it in IFD0
        original = _guarded(lambda: _exif_date(exif.get(TAG_DATETIME_ORIGINAL)), None)
    if original is not None:
        return original, "exif_original"
    modified = _guarded(lambda: _exif_date(exif.get(TAG_DATETIME)), None)
    if modified is not None:
        return modified, "exif"
    if mtime is not None:
        stamp = _guarded(lambda: datetime.fromtimestamp(mtime).replace(microsecond=0), None)
        if stamp is not None:
            return stamp, "mtime"
    return None, None


_EXIF_DATE = re.compile(r"(\d{4})[:\-/.](\d{2})[:\-/.](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")


def _exif_date(value: object) -> datetime | None:
    """Parse EXIF's "YYYY:MM:DD HH:MM:SS" (and common variants); None when blank or impossible."""
    text = _clean(value)
    match = _EXIF_DATE.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second) if year > 0 else None
    except ValueError:  # 0000:00:00, month 13…
        return None


def _gps(ifd: dict[int, Any]) -> tuple[float, float] | None:
    """Signed decimal (latitude, longitude) from a GPS IFD, or None when absent or out of range."""
    if not ifd or 2 not in ifd or 4 not in ifd:
        return None
    latitude = _degrees(ifd[2]) * (-1 if _clean(ifd.get(1)) in {"S", "s"} else 1)
    longitude = _degrees(ifd[4]) * (-1 if _clean(ifd.get(3)) in {"W", "w"} else 1)
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude, longitude) == (0, 0):
        return None  # (0, 0) is what receivers write without a fix
    return round(latitude, 7), round(longitude, 7)


def _degrees(value: Any) -> float:
    """Degrees, minutes, seconds (rationals) → decimal degrees."""
    parts = [float(part) for part in value]
    degrees, minutes, seconds = [*parts, 0.0, 0.0][:3]
    return degrees + minutes / 60 + seconds / 3600


def _clean(value: object) -> str | None:
    """A tag's text, NULs and surrounding blanks removed, inner runs of blanks collapsed; None if empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = _decode(value)
    text = " ".join(str(value).replace("\x00", " ").split())
    return text[:MAX_TEXT_CHARS] or None


def _decode(data: bytes) -> str:
    """UTF-8 when it is, else Latin-1 (what older IPTC and EXIF writers used)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _xp(value: Any) -> str | None:
    """A Windows XP* tag: UTF-16LE bytes (Pillow may hand them over as a tuple of ints)."""
    if isinstance(value, str):
        return _clean(value)
    raw = bytes(value)
    return _clean(raw.decode("utf-16-le").split("\x00", 1)[0])


def _xmp_packet(image: Image.Image) -> bytes | None:
    """The XMP packet Pillow found (JPEG APP1, PNG iTXt, WebP, TIFF), as bytes."""
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    return packet if isinstance(packet, bytes) and packet else None


def _as_bytes(value: object) -> bytes | None:
    """A TIFF XMLPacket tag's bytes (Pillow gives them as bytes or a tuple of ints)."""
    if isinstance(value, bytes | str):
        return value.encode("utf-8") if isinstance(value, str) else value
    return bytes(value) if isinstance(value, tuple) else None


def _parse_xmp(packet: bytes) -> ET.Element | None:
    """The packet's XML tree; DTDs are refused (no entity expansion), oversized packets skipped."""
    if len(packet) > MAX_XMP_BYTES or b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return None
    return ET.fromstring(packet.strip(b"\x00 \r\n\t"))


def _xmp_values(root: ET.Element, name: str) -> list[str]:
    """Every value of dc:`name`: rdf:li items (x-default language first), element text or attribute."""
    values: list[str] = []
    for description in root.iter(f"{NS_RDF}Description"):
        if (attribute := description.get(f"{NS_DC}{name}")) is not None:
            values.append(attribute)
    for element in root.iter(f"{NS_DC}{name}"):
        items = list(element.iter(f"{NS_RDF}li"))
        items.sort(key=lambda item: item.get(NS_XML_LANG, "x-default") != "x-default")
        values.extend(item.text or "" for item in items)
        if not items and element.text:
            values.append(element.text)
    return values


class _Texts:
    """Titles, descriptions and keywords gathered from every source, first source first, no repeats."""

    def __init__(self) -> None:
        self.titles: list[str] = []
        self.descriptions: list[str] = []
        self.keywords: list[str] = []

    @staticmethod
    def joined(values: list[str]) -> str | None:
        """One value per line, or None."""
        return "\n".join(values) or None

    @staticmethod
    def add(target: list[str], values: Iterable[object]) -> None:
        """Append each new, non-empty, non-boilerplate value (compared without case)."""
        seen = {value.casefold() for value in target}
        for value in values:
            text = _clean(value)
            if text and text.casefold() not in seen and text.casefold() not in CAMERA_BOILERPLATE:
                seen.add(text.casefold())
                target.append(text)

    def add_xmp(self, packet: bytes | None) -> None:
        """XMP dc:title, dc:description and dc:subject."""
        root = _parse_xmp(packet) if packet else None
        if root is not None:
            self.add(self.titles, _xmp_values(root, "title"))
            self.add(self.descriptions, _xmp_values(root, "description"))
            self.add(self.keywords, _xmp_values(root, "subject"))

    def add_iptc(self, image: Image.Image) -> None:
        """IPTC object name and headline (titles), caption/abstract and keywords."""
        if not isinstance(image, ImageFile.ImageFile):
            return
        info = IptcImagePlugin.getiptcinfo(image) or {}

        def values(key: tuple[int, int]) -> list[bytes]:
            value = info.get(key)
            return [] if value is None else value if isinstance(value, list) else [value]

        self.add(self.titles, values(IPTC_OBJECT_NAME) + values(IPTC_HEADLINE))
        self.add(self.descriptions, values(IPTC_CAPTION))
        self.add(self.keywords, values(IPTC_KEYWORDS))

    def add_exif(self, exif: Image.Exif) -> None:
        """EXIF ImageDescription and the Windows XPTitle, XPSubject, XPComment and XPKeywords tags."""
        self.add(self.titles, [_xp_tag(exif, XP_TITLE)])
        self.add(self.descriptions, [exif.get(TAG_DESCRIPTION), _xp_tag(exif, XP_SUBJECT)])
        self.add(self.descriptions, [_xp_tag(exif, XP_COMMENT)])
        self.add(self.keywords, (_xp_tag(exif, XP_KEYWORDS) or "").split(";"))


def _xp_tag(exif: Image.Exif, tag: int) -> str | None:
    """One XP* tag's text, or None when absent or unreadable."""
    return _guarded(lambda: _xp(exif[tag]), None) if tag in exif else None
