"""Stage 1: decode any image Pillow reads into an RGB picture, then into the encoder's input tensor."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from app import formats
from app.camera_raw import decode_raw
from app.errors import BadImage, NotAnImage

formats.load_plugins()  # HEIC/HEIF and JPEG XL open through Pillow once their plugins are registered

WHITE = (255, 255, 255)
_READABLE = ", ".join(fmt.name for fmt in formats.FORMATS if not fmt.raw and formats.unavailable(fmt) is None)
THUMBNAIL_SIZE = 256
# Pictures are decoded with a short side of at least this (when the file has it): twice the
# thumbnail and more than any encoder input here (224–384 px), so large photos decode reduced.
WORKING_SIDE = 2 * THUMBNAIL_SIZE
VIEW_SIDE = 2048  # the longest side of the JPEG sent where a browser cannot show the original


@dataclass(frozen=True)
class ImageSpec:
    """What an image encoder expects: square input size, normalisation and how to fit the picture."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fit: Literal["pad", "crop"] = "pad"


def _flatten(image: Image.Image) -> Image.Image:
    """Return an RGB image with any transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode.startswith("I;16") or image.mode in {"I", "F"}:
        # 16-bit and float greyscale: scale to 8 bits before converting.
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def _open(data: bytes | Path, max_pixels: int) -> Image.Image:
    """Open (header only) an image of at most `max_pixels`; raise NotAnImage or BadImage."""
    if isinstance(data, bytes) and not data:
        raise NotAnImage("the upload is empty (0 bytes)")
    # Pillow's own bomb guard stays below our limit so that ours, per caller, is the one applied: a
    # build asks for the collection's higher limit, uploads keep theirs (this global only grows).
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except UnidentifiedImageError as exc:
        raise NotAnImage(f"not an image in a format we can read ({_READABLE}…)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's own guard, refused in our words
        pixels = f"{found.group(1)} pixels" if found else "too many pixels"
        raise BadImage(f"image has {pixels}, above the limit of {max_pixels}") from exc
    except OSError as exc:
        raise BadImage(f"cannot read image: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadImage(
            f"image has {width}×{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    return image


def _load(image: Image.Image, min_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame upright in RGB, reduced to a short side of about `min_side` or more.

    JPEGs decode directly at 1/2, 1/4 or 1/8 scale (`draft`), so a 100 MP photo costs what a
    small one does; other formats decode in full and are box-reduced. Returns the picture and the
    upright size of the file itself.
    """
    width, height = image.size
    image.seek(0)  # first frame of animations
    image.draft(None, (min_side, min_side))  # JPEG and MPO; a no-op for other formats
    image.load()
    decoded = image.size
    upright: Image.Image = ImageOps.exif_transpose(image) or image
    if upright.size != decoded and upright.size == decoded[::-1]:
        width, height = height, width
    picture = _flatten(upright)
    factor = min(picture.size) // min_side
    if factor >= 2:
        picture = picture.reduce(factor)
    return picture, (width, height)


def check_image(data: bytes | Path, max_pixels: int = 50_000_000) -> None:
    """Raise NotAnImage or BadImage unless the header is an image of at most `max_pixels` (no decoding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        _open(data, max_pixels).close()


def decode_sized(
    data: bytes | Path, max_pixels: int = 50_000_000, min_side: int = WORKING_SIDE, name: str | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """An upright RGB picture (short side ≥ `min_side` when the file has it) and the file's own size.

    `name` is the file's name when known: a camera RAW one (`IMG_1.CR2`) is read through rawpy.
    """
    raw = formats.raw_format(name if name is not None else data.name if isinstance(data, Path) else None)
    if raw is not None:
        reason = formats.unavailable(raw)
        if reason is not None:
            raise BadImage(f"cannot read {raw.name} files: {reason}")
        return decode_raw(data if isinstance(data, bytes) else data.read_bytes(), max_pixels, min_side)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data, max_pixels)
        try:
            return _load(image, min_side)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(f"image too large to decode safely: {exc}") from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise BadImage(f"corrupt or truncated image: {exc}") from exc


def decode(
    data: bytes | Path, max_pixels: int = 50_000_000, min_side: int = WORKING_SIDE, name: str | None = None
) -> Image.Image:
    """Decode bytes or a file into an upright RGB image; raise NotAnImage or BadImage."""
    return decode_sized(data, max_pixels, min_side, name)[0]


def image_format(data: bytes | Path, name: str | None = None) -> str | None:
    """Pillow's name for the file's format (JPEG, PNG…; ours for camera RAW: DNG…), or None."""
    raw = formats.raw_format(name if name is not None else data.name if isinstance(data, Path) else None)
    if raw is not None:
        return raw.name
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with Image.open(source) as image:
            return image.format
    except (OSError, ValueError):
        return None


class Preprocessor:
    """Fit a picture into the encoder's square input and normalise it with the encoder's statistics."""

    def __init__(self, spec: ImageSpec) -> None:
        self.spec = spec
        # PILToTensor → ToDtype(scale) → Normalize, written out: torchvision costs seconds to import.
        self._mean = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Return a (3, size, size) float tensor."""
        size = (self.spec.size, self.spec.size)
        if self.spec.fit == "pad":
            fitted = ImageOps.pad(image, size, method=Image.Resampling.BICUBIC, color=WHITE)
        else:
            fitted = ImageOps.fit(image, size, method=Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.array(fitted.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
        tensor: torch.Tensor = (pixels.float() / 255.0 - self._mean) / self._std
        return tensor


Pixels = torch.Tensor | tuple[torch.Tensor, ...]
"""An encoder's input from a picture (3, S, S) or a batch (B, 3, S, S): a tensor, or a tuple of one per
input size for an encoder that takes several (the packaged one: Lite0's 224 px, its labeller's 260 px)."""


def tensors_of(pixels: Pixels, count: int | None = None) -> tuple[torch.Tensor, ...]:
    """The tensors of `pixels`, one per input size; ValueError unless there are `count` of them."""
    tensors = (pixels,) if isinstance(pixels, torch.Tensor) else pixels
    if count is not None and len(tensors) != count:
        raise ValueError(f"the encoder takes {count} input(s) per picture, not {len(tensors)}")
    return tensors


def joined(tensors: Sequence[torch.Tensor]) -> Pixels:
    """One tensor as itself, several as a tuple."""
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def stack(items: Sequence[Pixels]) -> Pixels:
    """The pictures' inputs as one batch: torch.stack per input size."""
    columns = zip(*(tensors_of(item) for item in items), strict=True)
    return joined([torch.stack(list(column)) for column in columns])


def mirror(pixels: Pixels) -> Pixels:
    """Every input flipped left to right (test-time augmentation)."""
    return joined([torch.flip(tensor, dims=[-1]) for tensor in tensors_of(pixels)])


class Inputs:
    """One picture → every input an encoder takes: a Preprocessor per ImageSpec, all from the same picture."""

    def __init__(self, specs: Sequence[ImageSpec]) -> None:
        self.specs = tuple(specs)
        self._each = [Preprocessor(spec) for spec in self.specs]

    def __call__(self, image: Image.Image) -> Pixels:
        """A tensor per spec (the tensor itself when there is one)."""
        return joined([preprocess(image) for preprocess in self._each])


def thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """JPEG bytes of the picture with its longest side at most `size` pixels."""
    copy = image.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


ImageFile.LOAD_TRUNCATED_IMAGES = False
