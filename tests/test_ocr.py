"""Text in pictures (app/ocr.py): what the reader finds on rendered documents, screens and signs, that it
finds nothing on photos without text, and that odd pictures never make it raise."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.errors import ModelUnavailable
from app.lexical import words
from app.ocr import ImageText, TextLine, TextReader, ctc_decode, is_noise, rows
from app.preprocessing import decode
from bench.ocr_set import PHOTOS, receipt, screen, sign, skimage_photo

Maker = Callable[[random.Random, int], tuple[Image.Image, list[str]]]


@pytest.fixture(scope="module")
def reader() -> TextReader:
    """One loaded reader for the module (real PP-OCRv4 networks, 2 threads)."""
    loaded = TextReader(threads=2)
    loaded.load()
    return loaded


def rendered(make: Maker, index: int, folder: Path) -> tuple[Image.Image, list[str]]:
    """A dev-set picture saved and decoded as the build decodes it, with the lines drawn on it."""
    image, lines = make(random.Random(f"test-{make.__name__}-{index}"), index)
    path = folder / f"{make.__name__}.jpg"
    image.save(path, quality=85)
    return decode(path), lines


def read_words(reader: TextReader, image: Image.Image) -> list[str]:
    """The folded words of what the reader indexes for a picture."""
    return words(reader.read(image).text)


@pytest.mark.real_weights
def test_the_heading_of_a_receipt_and_its_shop_are_read(reader: TextReader, tmp_path: Path) -> None:
    image, lines = rendered(receipt, 0, tmp_path)
    found = read_words(reader, image)
    assert "receipt" in found
    assert set(words(lines[1])) <= set(found), (lines[1], found)  # the shop's name


@pytest.mark.real_weights
def test_the_name_in_a_screenshot_is_read(reader: TextReader, tmp_path: Path) -> None:
    image, lines = rendered(screen, 0, tmp_path)
    name = lines[1]
    assert set(words(name)) <= set(read_words(reader, image)), name


@pytest.mark.real_weights
@pytest.mark.parametrize("index", [0, 1])
def test_a_shop_sign_is_read_with_its_box(reader: TextReader, tmp_path: Path, index: int) -> None:
    image, (shop,) = rendered(sign, index, tmp_path)
    result = reader.read(image)
    assert set(words(shop)) <= set(words(result.text)), (shop, result.text)
    line = next(line for line in result.lines if set(words(line.text)) & set(words(shop)))
    assert line.confidence >= reader.params.min_confidence
    assert len(line.box) == 4 and all(0 <= x <= 1 and 0 <= y <= 1 for x, y in line.box)
    assert line.top < 0.6  # the board hangs in the upper part of the picture


@pytest.mark.real_weights
@pytest.mark.parametrize("name", PHOTOS)
def test_photos_without_text_give_nothing_to_index(reader: TextReader, name: str) -> None:
    result = reader.read(skimage_photo(name))
    assert not result and result.text == ""


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """The picture in another mode; 16-bit and float greyscale as a camera or a scanner writes them."""
    if mode in ("I;16", "I", "F"):
        deep = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 256)
        return deep if mode == "I;16" else deep.convert("I").convert(mode)
    return image.convert(mode)


@pytest.mark.real_weights
@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16", "I", "F", "CMYK", "YCbCr"])
def test_a_sign_is_read_in_every_image_mode(reader: TextReader, tmp_path: Path, mode: str) -> None:
    image, (shop,) = rendered(sign, 0, tmp_path)
    converted = in_mode(image, mode)
    assert converted.mode == mode
    result = reader.read(converted)
    if mode != "1":  # dithered to black and white, letters may be lost: it must not raise
        assert set(words(shop)) <= set(words(result.text)), (mode, result.text)


@pytest.mark.real_weights
@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1), "white"),
        Image.new("RGB", (7, 300), "black"),
        Image.new("RGB", (3000, 2), "white"),
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
        Image.new("L", (12_000, 9_000), 255),
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)),
    ],
    ids=["1x1", "7x300", "3000x2", "transparent", "huge", "noise"],
)
def test_odd_pictures_give_nothing_and_never_raise(reader: TextReader, image: Image.Image) -> None:
    assert not reader.read(image)
    assert reader.has_text(image) in (True, False)


@pytest.mark.real_weights
def test_a_pickled_reader_loads_its_own_networks_in_a_worker_process(
    reader: TextReader, tmp_path: Path
) -> None:
    copy = pickle.loads(pickle.dumps(reader))
    assert not copy.loaded and copy.threads == reader.threads and copy.params == reader.params
    image, (shop,) = rendered(sign, 1, tmp_path)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        texts = list(pool.map(TextReader.read, [reader], [image]))
    assert set(words(shop)) <= set(words(texts[0].text))


def test_without_the_networks_loading_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps rapidocr-onnxruntime==1\.4\.4"):
        TextReader().load()


def line(text: str, left: float, top: float, height: float = 0.05, width: float = 0.2) -> TextLine:
    """A horizontal line's box."""
    box = ((left, top), (left + width, top), (left + width, top + height), (left, top + height))
    return TextLine(text, 0.99, box)


def test_lines_are_joined_in_reading_order() -> None:
    lines = (
        line("Central", 0.5, 0.102),
        line("Hotel", 0.2, 0.1),
        line("Rooms", 0.2, 0.3),
        line("Free", 0.1, 0.2),
    )
    assert [[item.text for item in row] for row in rows(lines)] == [["Hotel", "Central"], ["Free"], ["Rooms"]]
    assert ImageText(lines).text == "Hotel Central\nFree\nRooms"


def test_ctc_decoding_folds_repeats_and_blanks_and_averages_confidence() -> None:
    characters = ["", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 3, 0]  # a a _ a b b ␣ _  →  "aab" (the trailing space stripped)
    probabilities = np.full((1, len(steps), 4), 0.02, dtype=np.float32)
    for step, index in enumerate(steps):
        probabilities[0, step, index] = 0.9 if index != 2 else 0.6
    ((text, confidence),) = ctc_decode(probabilities, characters)
    assert text == "aab"
    assert confidence == pytest.approx((0.9 + 0.9 + 0.6 + 0.9) / 4)


@pytest.mark.parametrize(
    ("text", "confidence", "noise"),
    [
        ("Bakery", 0.95, False),
        ("25", 0.99, False),
        ("I", 0.99, True),
        ("-.", 0.99, True),
        ("HHHIY", 0.39, True),
    ],
)
def test_noise_is_single_characters_or_low_confidence(text: str, confidence: float, noise: bool) -> None:
    assert is_noise(text, confidence, 0.8) is noise
