"""Camera RAW files (CR2, CR3, NEF, ARW, DNG, ORF, RW2): their picture through rawpy, their EXIF.

The picture is the JPEG preview the camera embedded when it is large enough for everything the
project makes of it (thumbnail, encoder input, /view), else the sensor data demosaiced (at half
size when that is still large enough). The EXIF is read from the file's own TIFF structure (ORF and
RW2 are TIFFs under another magic number; a CR3 keeps its IFDs in CMT boxes), with Pillow's reader.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from app.errors import BadImage

IFD_EXIF, IFD_GPS = 0x8769, 0x8825
TIFF_HEADS = (b"II*\x00", b"MM\x00*")
# Magic numbers of TIFF-structured RAW formats → the TIFF one, so that Pillow's reader takes them.
AS_TIFF = {b"IIRO": b"II*\x00", b"IIRS": b"II*\x00", b"MMOR": b"MM\x00*", b"IIU\x00": b"II*\x00"}
CR3_BOXES = {b"CMT1": 0, b"CMT2": IFD_EXIF, b"CMT4": IFD_GPS}  # CR3: box → the IFD its TIFF holds
CR3_SEARCHED = 1 << 20  # the CMT boxes sit in the first few kB of a CR3
# LibRaw's `flip` → the transpose that makes the embedded preview upright
FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def decode_raw(data: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """An upright RGB picture (short side ≥ `min_side` when the file has it) and the photo's own size."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            size = _upright_size(raw.sizes)
            if size[0] * size[1] > max_pixels:
                raise BadImage(f"image has {size[0]}×{size[1]} pixels, above the limit of {max_pixels}")
            picture = _preview(raw, min(min_side, *size)) or _demosaic(raw, min_side)
    except rawpy.LibRawError as exc:
        raise BadImage(f"cannot read this camera RAW file: {_reason(exc)}") from exc
    except (OSError, ValueError, MemoryError) as exc:
        raise BadImage(f"cannot read this camera RAW file: {exc}") from exc
    factor = min(picture.size) // min_side
    return (picture.reduce(factor) if factor >= 2 else picture), size


def raw_size(data: bytes) -> tuple[int, int]:
    """The photo's upright size, read from the headers (raises what rawpy raises)."""
    import rawpy

    with rawpy.imread(io.BytesIO(data)) as raw:
        return _upright_size(raw.sizes)


def _reason(exc: Exception) -> str:
    """LibRaw's message as text."""
    message = exc.args[0] if exc.args else exc
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def _upright_size(sizes: Any) -> tuple[int, int]:
    """(width, height) of the developed photo, turned as the camera was held."""
    width, height = int(sizes.width), int(sizes.height)
    return (height, width) if int(sizes.flip) in {5, 6} else (width, height)


def _preview(raw: Any, needed: int) -> Image.Image | None:
    """The embedded preview, upright, when it is a picture with a short side of at least `needed`."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, ValueError):
        return None
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        picture = Image.fromarray(np.asarray(thumb.data, dtype=np.uint8)).convert("RGB")
    else:
        try:
            opened = Image.open(io.BytesIO(thumb.data))
            opened.draft("RGB", (needed, needed))
            picture = opened.convert("RGB")
            orientation = opened.getexif().get(0x0112, 1)
        except (OSError, ValueError, SyntaxError):
            return None
        if orientation != 1:  # the preview says how to turn it
            return (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    turn = FLIPS.get(int(raw.sizes.flip))
    picture = picture.transpose(turn) if turn is not None else picture
    return picture if min(picture.size) >= needed else None


def _demosaic(raw: Any, min_side: int) -> Image.Image:
    """The sensor data developed with the camera's white balance, at half size when that is enough."""
    half = min(int(raw.sizes.width), int(raw.sizes.height)) >= 2 * min_side
    rgb = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
    return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).convert("RGB")


class _Boxes(Image.Exif):
    """IFD0 from one TIFF and the Exif and GPS IFDs from others (a CR3 keeps each in its own box)."""

    def __init__(self, tiffs: dict[int, bytes]) -> None:
        super().__init__()
        if 0 in tiffs:
            self.load(tiffs[0])
        self._parts: dict[int, dict[int, Any]] = {}
        for tag, tiff in tiffs.items():
            if tag:
                part = Image.Exif()
                part.load(tiff)
                self._parts[tag] = dict(part)

    def get_ifd(self, tag: int) -> dict[int, Any]:
        """A sub-IFD: from its own box when the file had one."""
        return self._parts[tag] if tag in self._parts else super().get_ifd(tag)


def raw_exif(data: bytes) -> Image.Exif:
    """The EXIF of a camera RAW file's bytes (empty when there is none that Pillow can read)."""
    head = data[:4]
    if head in AS_TIFF:
        data = AS_TIFF[head] + data[4:]
    elif head not in TIFF_HEADS:
        return _cr3_exif(data) if data[4:8] == b"ftyp" else Image.Exif()
    exif = Image.Exif()
    exif.load(data)
    return exif


def _cr3_exif(data: bytes) -> Image.Exif:
    """A CR3's CMT1 (IFD0), CMT2 (Exif) and CMT4 (GPS) boxes, each a TIFF of its own."""
    tiffs: dict[int, bytes] = {}
    searched = data[:CR3_SEARCHED]
    for box, tag in CR3_BOXES.items():
        at = searched.find(box)
        if at >= 4:
            tiffs[tag] = data[at + 4 : at - 4 + int.from_bytes(searched[at - 4 : at], "big")]
    return _Boxes(tiffs)
