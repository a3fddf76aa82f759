"""Decoding every format users upload into the picture the encoder should see."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.errors import BadImage, NotAnImage
from app.preprocessing import (
    WORKING_SIDE,
    ImageSpec,
    Inputs,
    Preprocessor,
    decode,
    decode_sized,
    mirror,
    stack,
    tensors_of,
    thumbnail,
)
from app.settings import COLLECTION_PIXELS
from tests.conftest import bomb_header


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Image → bytes in a format."""
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_common_format_decodes_to_rgb(fmt: str) -> None:
    image = decode(encode(Image.new("RGB", (30, 20), (200, 10, 10)), fmt))
    assert image.mode == "RGB" and image.size == (30, 20)
    red, green, _ = image.crop((5, 5, 6, 6)).tobytes()
    assert red > 150 and green < 60


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode(encode(rgba, "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255) and image.getpixel((0, 0)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    tall = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image = decode(encode(tall, "JPEG", exif=exif.tobytes()))
    assert image.size == (20, 40)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, _, blue = decode(data).crop((4, 4, 5, 5)).tobytes()
    assert red > 200 and blue < 50


def test_cmyk_jpeg_and_16_bit_png_decode() -> None:
    cmyk = decode(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200  # type: ignore[index]
    deep = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    grey = decode(encode(deep, "PNG"))
    assert grey.mode == "RGB" and 140 < grey.getpixel((4, 4))[0] < 170  # type: ignore[index]


def test_errors_distinguish_non_images_from_broken_images() -> None:
    with pytest.raises(NotAnImage):
        decode(b"just text")
    with pytest.raises(NotAnImage, match="empty"):
        decode(b"")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated = encode(noise, "PNG")[:2000]
    with pytest.raises(BadImage):
        decode(truncated)
    with pytest.raises(BadImage, match="limit"):
        decode(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_preprocessor_gives_normalised_square_tensor(fit: str) -> None:
    spec = ImageSpec(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), fit=fit)  # type: ignore[arg-type]
    tensor = Preprocessor(spec)(Image.new("RGB", (64, 16), (0, 0, 0)))
    assert tuple(tensor.shape) == (3, 32, 32)
    corner = float(tensor[0, 0, 0])
    assert corner == pytest.approx(2.0 if fit == "pad" else -2.0)  # white padding vs black pixels


def test_inputs_of_two_sizes_keep_the_first_exactly_and_batch_and_mirror_each() -> None:
    """The packaged encoder's two inputs of one picture (Lite0's 224 px, Lite2's 260 px): the first is
    exactly what the one-input preprocessing gives, both are fitted from the same picture."""
    first = ImageSpec(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    second = ImageSpec(size=260, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    picture = Image.new("RGB", (300, 200), (200, 30, 30))
    picture.paste((30, 30, 200), (0, 0, 150, 200))  # blue left half, red right half
    own, theirs = tensors_of(Inputs([first, second])(picture), 2)
    assert torch.equal(own, Preprocessor(first)(picture))
    assert torch.equal(theirs, Preprocessor(second)(picture))
    single = Inputs([first])(picture)
    assert isinstance(single, torch.Tensor) and torch.equal(single, own)
    batch = tensors_of(stack([(own, theirs), (own, theirs)]), 2)
    assert [tuple(t.shape) for t in batch] == [(2, 3, 224, 224), (2, 3, 260, 260)]
    mirrored = tensors_of(mirror(batch), 2)
    for tensor, flipped in zip(batch, mirrored, strict=True):
        assert float(tensor[0, 2, 112, 10]) > 0 > float(flipped[0, 2, 112, 10])  # blue, then red
    with pytest.raises(ValueError, match="takes 2 input"):
        tensors_of(own, 2)


def test_thumbnail_is_jpeg_within_256_px() -> None:
    data = thumbnail(Image.new("RGB", (1000, 500), (1, 2, 3)))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (256, 128)


def test_a_100_megapixel_jpeg_decodes_reduced_and_reports_its_own_size(large_jpeg: Path) -> None:
    data = large_jpeg.read_bytes()
    assert len(data) < 4 * 1024 * 1024  # a cheap test file: 1.5 MB of solid colour
    picture, size = decode_sized(data, COLLECTION_PIXELS)
    assert size == (10_000, 10_000)
    assert WORKING_SIDE <= min(picture.size) < 4 * WORKING_SIDE  # decoded at 1/8 scale, not 300 MB
    red, green, _ = picture.getpixel((10, 10))  # type: ignore[misc]
    assert red > 200 and green < 40
    with pytest.raises(BadImage, match="above the limit of 50000000"):
        decode(data)  # the upload limit still applies to uploads


def test_reduced_decoding_keeps_the_upright_size_of_a_rotated_photo() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = encode(Image.new("RGB", (4000, 1200), (0, 0, 255)), "JPEG", exif=exif.tobytes())
    picture, size = decode_sized(data)
    assert size == (1200, 4000) and picture.width < picture.height and min(picture.size) >= WORKING_SIDE


def test_decompression_bombs_are_refused_at_the_collection_limit_too() -> None:
    bomb = bomb_header(30_000, 30_000)  # 900 MP over a few bytes
    assert len(bomb) < 1000
    for limit in (50_000_000, COLLECTION_PIXELS):
        with pytest.raises(BadImage, match=f"900000000 pixels, above the limit of {limit}"):
            decode_sized(bomb, limit)
