"""The propagation prototype of bench/propagation.py: what phase 2 must keep when it moves into app/."""

from __future__ import annotations

import numpy as np

from bench.propagation import Fusion, Match, Spread, Words, fuse, lendable, lift, propagate


def unit_rows(*rows: list[float]) -> np.ndarray:
    """Unit rows as float32."""
    matrix = np.asarray(rows, dtype=np.float32)
    unit: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


def test_names_that_say_nothing_about_the_picture_lend_nothing() -> None:
    assert lendable(["IMG_0007", "2019/Camera Roll", "DCIM/misc"]) == set()
    assert lendable(["red-car", "cars/2019"]) == {"red", "car", "cars"}


def test_an_unnamed_look_alike_borrows_the_words_of_a_named_picture() -> None:
    # red-car.jpg, its unnamed look-alike, IMG_0007.jpg in 2019/ and its unnamed look-alike.
    features = unit_rows([1, 0.1, 0, 0], [1, 0.15, 0.05, 0], [0, 0, 1, 0.1], [0, 0.05, 1, 0.12])
    words = [
        (lendable(["red-car"]), set()),
        (set(), set()),
        (lendable(["IMG_0007"]), lendable(["2019"])),
        (set(), set()),
    ]
    lent = propagate(features, words, Spread(coherent=None))
    assert lent[1].words == {"red", "car"} and lent[1].lenders == (0,) and lent[1].omega == 1.0
    assert 3 not in lent  # nothing to lend: digits and camera names are not words of content


def test_a_folder_word_over_unrelated_pictures_does_not_spread() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((60, 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    words: list[Words] = [({"holiday"}, set()) if row % 3 == 0 else (set(), set()) for row in range(60)]
    assert lift(features, [names for names, _ in words])["holiday"] < 1.5
    assert propagate(features, words, Spread(coherent=1.5, statistic="lift")) == {}


def test_a_clear_look_stays_first_and_scores_follow_the_ranking() -> None:
    # "a cat": the cat photo leads the looks by far; six unrelated photos sit in a folder cats/.
    vector = [
        (0, 0.80),
        (7, 0.19),
        (1, 0.185),
        (8, 0.17),
        (2, 0.165),
        (3, 0.16),
        (4, 0.15),
        (5, 0.15),
        (6, 0.13),
    ]
    folder_only = [Match(row, 1.2, 1.0, 1.0, 0.0, False) for row in range(1, 7)]
    assert fuse(vector, folder_only, {}, Fusion())[0][0] != 0  # what ships
    fused = fuse(vector, folder_only, {}, Fusion(lead=0.5, strict=True))
    assert fused[0][0] == 0
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= score <= 1.0 for score in scores)
