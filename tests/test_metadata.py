"""Metadata read at build time: each source a camera or photo manager writes, and every fallback."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageOps, PngImagePlugin, TiffImagePlugin

from app.metadata import (
    COLUMNS,
    ImageMetadata,
    read_bytes_metadata,
    read_file_metadata,
    read_metadata,
    table_sql,
)

XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:title><rdf:Alt>
    <rdf:li xml:lang="fr-FR">La tour Eiffel</rdf:li>
    <rdf:li xml:lang="x-default">Eiffel Tower at dusk</rdf:li>
   </rdf:Alt></dc:title>
   <dc:description><rdf:Alt>
    <rdf:li xml:lang="x-default">Seen from the Trocadéro</rdf:li>
   </rdf:Alt></dc:description>
   <dc:subject><rdf:Bag><rdf:li>paris</rdf:li><rdf:li>landmark</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def jpeg(exif: Image.Exif | None = None, size: tuple[int, int] = (40, 30), **save: object) -> bytes:
    """A small JPEG with the given EXIF and save options (xmp=…)."""
    out = io.BytesIO()
    kwargs = dict(save)
    if exif is not None:
        kwargs["exif"] = exif
    Image.new("RGB", size, (200, 30, 30)).save(out, format="JPEG", **kwargs)
    return out.getvalue()


def with_iptc(data: bytes, records: list[tuple[int, int, bytes]]) -> bytes:
    """Insert an APP13 Photoshop segment holding IPTC-IIM records right after the JPEG's SOI."""
    iim = b"".join(b"\x1c" + bytes([r, d]) + struct.pack(">H", len(v)) + v for r, d, v in records)
    iim += b"\x00" * (len(iim) % 2)
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    payload = b"Photoshop 3.0\x00" + resource
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def xp(text: str) -> bytes:
    """A Windows XP* tag value: UTF-16LE, NUL-terminated."""
    return (text + "\x00").encode("utf-16-le")


def camera_exif() -> Image.Exif:
    """EXIF as a phone writes it: both dates, camera, description, orientation and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D Mark IV"
    exif[0x010E] = "A red door in the old town"
    exif[0x0132] = "2021:01:02 03:04:05"
    exif[0x0112] = 6  # rotate 90°: stored 40×30, shown 30×40
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 21:30:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[3] = "S", "W"
    gps[2] = (
        TiffImagePlugin.IFDRational(33),
        TiffImagePlugin.IFDRational(52),
        TiffImagePlugin.IFDRational(12),
    )
    gps[4] = (
        TiffImagePlugin.IFDRational(151),
        TiffImagePlugin.IFDRational(12),
        TiffImagePlugin.IFDRational(36),
    )
    return exif


def test_exif_date_camera_gps_orientation_and_description() -> None:
    meta = read_bytes_metadata(jpeg(camera_exif()), "2019/holidays/IMG_0001.jpg", mtime=0.0)
    assert (meta.folder, meta.name, meta.format) == ("2019/holidays", "IMG_0001.jpg", "JPEG")
    assert (meta.width, meta.height) == (30, 40)
    assert meta.taken_at == datetime(2019, 7, 14, 21, 30, 0)
    assert meta.taken_at_source == "exif_original"
    assert (meta.camera_make, meta.camera_model) == ("Canon", "Canon EOS 5D Mark IV")
    assert meta.latitude == pytest.approx(-(33 + 52 / 60 + 12 / 3600))
    assert meta.longitude == pytest.approx(-(151 + 12 / 60 + 36 / 3600))
    assert meta.has_gps
    assert meta.description == "A red door in the old town"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_size_is_upright_in_every_format_with_exif(fmt: str) -> None:
    """The size the build decodes (EXIF orientation applied) is the size stored."""
    out = io.BytesIO()
    Image.new("RGB", (40, 30)).save(out, format=fmt, exif=camera_exif())
    meta = read_bytes_metadata(out.getvalue(), "x")
    with Image.open(io.BytesIO(out.getvalue())) as image:
        upright = ImageOps.exif_transpose(image)
    assert (meta.width, meta.height) == upright.size == (30, 40)
    assert meta.format == fmt and meta.camera_make == "Canon" and meta.taken_at is not None


def test_exif_datetime_when_original_is_missing_or_blank() -> None:
    exif = Image.Exif()
    exif[0x0132] = "2021:01:02 03:04:05"
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"  # what some cameras write without a clock
    meta = read_bytes_metadata(jpeg(exif), "a.jpg", mtime=0.0)
    assert (meta.taken_at, meta.taken_at_source) == (datetime(2021, 1, 2, 3, 4, 5), "exif")


def test_file_mtime_when_no_exif_date(tmp_path: Path) -> None:
    path = tmp_path / "scans" / "grandma.png"
    path.parent.mkdir()
    Image.new("RGB", (8, 6)).save(path)
    when = datetime(2005, 5, 6, 7, 8, 9)
    os.utime(path, (when.timestamp(), when.timestamp()))
    meta = read_file_metadata(path, tmp_path)
    assert (meta.folder, meta.name, meta.format, meta.width, meta.height) == (
        "scans",
        "grandma.png",
        "PNG",
        8,
        6,
    )
    assert (meta.taken_at, meta.taken_at_source) == (when, "mtime")
    assert not meta.has_gps and meta.camera_make is None and meta.text == ""


def test_no_date_at_all_without_mtime() -> None:
    meta = read_bytes_metadata(jpeg(), "row-17.jpg")
    assert (meta.taken_at, meta.taken_at_source, meta.folder) == (None, None, "")


def test_windows_xp_tags_in_utf16() -> None:
    exif = Image.Exif()
    exif[0x9C9B] = xp("Château de Chambord")
    exif[0x9C9F] = xp("Loire valley trip")
    exif[0x9C9E] = xp("castle; france;Renaissance")
    meta = read_bytes_metadata(jpeg(exif), "x.jpg")
    assert meta.title == "Château de Chambord"
    assert meta.description == "Loire valley trip"
    assert meta.keywords == ("castle", "france", "Renaissance")


def test_xmp_in_jpeg_app1() -> None:
    meta = read_bytes_metadata(jpeg(xmp=XMP.encode()), "x.jpg")
    assert meta.title == "Eiffel Tower at dusk\nLa tour Eiffel"  # x-default first
    assert meta.description == "Seen from the Trocadéro"
    assert meta.keywords == ("paris", "landmark")
    assert "Trocadéro" in meta.text and "landmark" in meta.text


def test_xmp_in_png_itxt() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    out = io.BytesIO()
    Image.new("RGB", (5, 5)).save(out, format="PNG", pnginfo=info)
    meta = read_bytes_metadata(out.getvalue(), "x.png")
    assert meta.keywords == ("paris", "landmark")
    assert meta.description == "Seen from the Trocadéro"


def test_iptc_keywords_and_caption() -> None:
    data = with_iptc(
        jpeg(),
        [
            (2, 5, b"Harbour"),
            (2, 25, b"boats"),
            (2, 25, "pêcheurs".encode()),
            (2, 120, b"Fishing boats at dawn"),
        ],
    )
    meta = read_bytes_metadata(data, "x.jpg")
    assert meta.title == "Harbour"
    assert meta.description == "Fishing boats at dawn"
    assert meta.keywords == ("boats", "pêcheurs")


def test_sources_merge_without_repeats_or_camera_boilerplate() -> None:
    exif = Image.Exif()
    exif[0x010E] = "OLYMPUS DIGITAL CAMERA         "
    exif[0x9C9E] = xp("Paris;tower")
    data = with_iptc(
        jpeg(exif, xmp=XMP.encode()), [(2, 25, b"PARIS"), (2, 120, b"Seen from the Trocad\xc3\xa9ro")]
    )
    meta = read_bytes_metadata(data, "x.jpg")
    assert meta.keywords == ("paris", "landmark", "tower")
    assert meta.description == "Seen from the Trocadéro"


def test_broken_tags_are_skipped_and_the_rest_is_read() -> None:
    exif = Image.Exif()
    exif[0x0110] = "Pixel 7"
    exif.get_ifd(0x8769)[0x9003] = "not a date"
    exif[0x0132] = "2020:13:45 99:99:99"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[3] = "N", "E"
    gps[2] = (
        TiffImagePlugin.IFDRational(1, 0),
        TiffImagePlugin.IFDRational(0),
        TiffImagePlugin.IFDRational(0),
    )
    gps[4] = (TiffImagePlugin.IFDRational(2), TiffImagePlugin.IFDRational(0), TiffImagePlugin.IFDRational(0))
    exif[0x9C9B] = b"\xff"  # odd-length UTF-16
    bad_xmp = b"<x:xmpmeta><unclosed>"
    meta = read_bytes_metadata(jpeg(exif, xmp=bad_xmp), "x.jpg", mtime=86400.0 * 365)
    assert meta.camera_model == "Pixel 7"
    assert meta.taken_at_source == "mtime"
    assert not meta.has_gps
    assert meta.width == 40
    assert meta.title is None


def test_xmp_with_entities_is_not_expanded() -> None:
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>'
    meta = read_bytes_metadata(jpeg(xmp=bomb), "x.jpg")
    assert meta.text == ""


def test_metadata_is_read_without_decoding_pixels() -> None:
    """A file cut inside its pixel data cannot be decoded, yet its header metadata is all there."""
    data = jpeg(camera_exif(), size=(400, 300), xmp=XMP.encode())
    with Image.open(io.BytesIO(data[: len(data) - 200])) as image:
        meta = read_metadata(image, "cut.jpg")
        assert meta.taken_at_source == "exif_original" and meta.keywords == ("paris", "landmark")
        with pytest.raises(OSError, match="truncated"):
            image.load()


def test_row_round_trip_through_sqlite() -> None:
    data = with_iptc(jpeg(camera_exif(), xmp=XMP.encode()), [(2, 25, b"boats")])
    meta = read_bytes_metadata(data, "2019/paris/eiffel.jpg")
    plain = ImageMetadata(folder="", name="a.gif", format="GIF", width=1, height=1)
    connection = sqlite3.connect(":memory:")
    connection.execute(table_sql())
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    connection.executemany(
        f"INSERT INTO metadata VALUES ({marks})", [("a", *meta.to_row()), ("b", *plain.to_row())]
    )
    names = ", ".join(name for name, _ in COLUMNS)
    rows = connection.execute(f"SELECT {names} FROM metadata ORDER BY id").fetchall()
    assert [ImageMetadata.from_row(row) for row in rows] == [meta, plain]


def test_dataset_text_columns_join_the_text() -> None:
    meta = ImageMetadata(folder="", name="row-3.png", format="PNG", width=2, height=2, keywords=("dog",))
    more = meta.with_text(descriptions=["A dog on a sofa", ""], keywords=["person", "Dog", "sofa"])
    assert more.description == "A dog on a sofa"
    assert more.keywords == ("dog", "person", "sofa")
    assert more.with_text(descriptions=["a dog on a sofa"]).description == "A dog on a sofa"
