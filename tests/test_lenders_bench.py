"""bench/lenders.py: its word test and its colour-invariant drawing features, on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from app.propagation import Lending, Lent
from bench.lenders import drawing, grey_thumbnail, matcher


def test_a_caption_word_matches_a_lender_as_the_borrowed_words_are_matched_at_query_time() -> None:
    words = {"crowned", "crane", "cat", "moonwrasse", "apples"}
    lending = Lending({0: Lent(frozenset(words), frozenset(), 1.0, (1,))})
    test = matcher(words)
    for term in ("crow", "crane", "cat", "cats", "moon", "apple", "app", "pig", "ca"):
        assert test(term) == bool(lending.matching(term)), term


def test_two_colour_variants_of_one_drawing_have_the_same_grey_thumbnail_and_padding_does_not_count(
    tmp_path: Path,
) -> None:
    def flag(colour: tuple[int, int, int], size: int, margin: int) -> Path:
        image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        pixels = np.asarray(image).copy()
        pixels[margin : size - margin, margin : size // 2] = (*colour, 255)  # the cloth
        pixels[margin : size - margin, margin : margin + 2] = (40, 40, 40, 255)  # the pole
        path = tmp_path / f"{colour}-{size}.png"
        Image.fromarray(pixels).save(path)
        return path

    red, green = flag((220, 0, 0), 64, 4), flag((0, 160, 0), 96, 20)
    first, second = (grey_thumbnail(drawing(path)[0], 16) for path in (red, green))
    cosine = float(first @ second / np.linalg.norm(first) / np.linalg.norm(second))
    assert cosine > 0.95
