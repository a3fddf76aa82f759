"""Build stage 1, reading: one source item → its bytes, sha256 and (unless reused) decoded tensors.

What the engines run where the files are read (DataLoader workers, Ray actors): an item whose sha256
the previous index holds is `Reused` without decoding, a readable picture is `Fresh` (tensors per
encoder input, size, format, thumbnail), anything else `Failed` with the reason the report gives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from torch.utils.data import Dataset

from app.errors import ImgSearchError
from app.preprocessing import Inputs, Pixels, decode_sized, image_format, stack, thumbnail
from app.sources import Item, Source


@dataclass(frozen=True)
class Failed:
    """An item that could not be read or decoded, and why."""

    source: str
    error: str


@dataclass(frozen=True)
class Reused:
    """An item whose sha256 the previous index holds: its stored vectors and thumbnail are reused."""

    source: str
    sha256: str
    original: bytes | None  # the bytes to keep, for sources that store originals


@dataclass(frozen=True)
class Fresh:
    """A decoded item to encode: its tensors (until collate stacks them), size, format and thumbnail."""

    source: str
    sha256: str
    original: bytes | None
    width: int
    height: int
    format: str | None
    thumbnail: bytes
    pixels: Pixels | None = None  # one tensor per encoder input size (app/preprocessing.Inputs)


DecodedItem = Failed | Reused | Fresh  # what reading one item gives


def decode_item(
    item: Item, preprocess: Inputs, max_pixels: int, known: frozenset[str], keep_original: bool
) -> DecodedItem:
    """Read one item: bytes → sha256 → (unless reusable) decoded picture → tensor and thumbnail."""
    try:
        raw = item.data if isinstance(item.data, bytes) else item.data.read_bytes()
    except OSError as exc:
        return Failed(item.source, f"cannot read file: {exc.strerror or exc}")
    sha256 = hashlib.sha256(raw).hexdigest()
    original = raw if keep_original else None
    if sha256 in known:
        return Reused(item.source, sha256, original)
    try:
        # large photos decode reduced; the name says which files are camera RAW
        image, (width, height) = decode_sized(raw, max_pixels, name=item.source)
        return Fresh(
            source=item.source,
            sha256=sha256,
            original=original,
            width=width,
            height=height,
            format=image_format(raw, item.source),
            thumbnail=thumbnail(image),
            pixels=preprocess(image),
        )
    except ImgSearchError as exc:
        return Failed(item.source, str(exc))


class DecodedSource(Dataset[DecodedItem]):
    """Worker-side read of a source's items (see decode_item)."""

    def __init__(
        self, source: Source, preprocess: Inputs, max_pixels: int, known: frozenset[str] = frozenset()
    ) -> None:
        """Read from `source`; files whose sha256 is in `known` are reused, not decoded."""
        self.source = source
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.known = known

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> DecodedItem:
        return decode_item(
            self.source[i], self.preprocess, self.max_pixels, self.known, self.source.stores_originals
        )


def collate(batch: list[DecodedItem]) -> tuple[Pixels | None, list[DecodedItem]]:
    """Stack the tensors of items to encode; keep every item, fresh ones without their tensors."""
    tensors = [item.pixels for item in batch if isinstance(item, Fresh) and item.pixels is not None]
    items = [replace(item, pixels=None) if isinstance(item, Fresh) else item for item in batch]
    return (stack(tensors) if tensors else None), items
