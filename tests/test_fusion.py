"""Fusion of the vector and lexical rankings: full name matches rise, partial ones do not beat the look."""

from __future__ import annotations

import random

import pytest

from app.fusion import fuse


def vector_hits(count: int = 200, seed: int = 0) -> list[tuple[str, float]]:
    """A vector ranking: ids with cosine scores, best first, with ties (as float16 vectors give)."""
    rng = random.Random(seed)
    scores = sorted((round(rng.uniform(-0.2, 0.9), 2) for _ in range(count)), reverse=True)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(count)]
    return list(zip(ids, scores, strict=True))


def order(fused: list[tuple[str, float]]) -> list[str]:
    """The fused ids, best first."""
    return [key for key, _ in fused]


@pytest.mark.parametrize("seed", range(5))
def test_an_empty_lexical_list_keeps_the_vector_order_exactly(seed: int) -> None:
    vector = vector_hits(seed=seed)
    assert order(fuse(vector, [])) == [key for key, _ in vector]
    assert order(fuse(vector, [], weight=7.0, power=1)) == [key for key, _ in vector]


def test_a_full_name_match_rises_to_the_top() -> None:
    vector = vector_hits()
    named = vector[150][0]  # the photo called eiffel-tower.jpg, 151st by pixels alone
    fused = order(fuse(vector, [(named, 7.5, 1.0), (vector[90][0], 1.0, 1.0)]))
    assert fused[0] == named


def test_a_half_match_does_not_beat_the_best_look_but_lifts_a_close_one() -> None:
    vector = [
        ("car", 0.80),
        ("truck", 0.78),
        ("bus", 0.60),
        ("apple", 0.45),
        ("stop light", 0.40),
        ("sky", 0.20),
    ]
    half = [("apple", 9.0, 0.5), ("stop light", 8.0, 0.5)]  # "red" of "a red car" in their names
    assert order(fuse(vector, half)) == ["car", "truck", "apple", "stop light", "bus", "sky"]
    full = [("truck", 3.0, 1.0), *half]  # red-truck.jpg: both words, a weaker BM25 than the apple's
    assert order(fuse(vector, full))[0] == "truck"


def test_lexical_only_ids_join_the_list() -> None:
    fused = fuse([("a", 0.9), ("b", 0.1)], [("z", 3.0, 1.0)])
    assert order(fused) == ["z", "a", "b"]
    assert set(order(fuse([("a", 0.9)], [("z", 3.0, 0.0)]))) == {"a", "z"}  # kept, below: no coverage


def test_zero_weight_silences_the_lexical_list() -> None:
    vector = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    assert order(fuse(vector, [("c", 5.0, 1.0), ("b", 4.0, 1.0)], weight=0.0)) == ["a", "b", "c"]


def test_a_negative_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        fuse([("a", 1.0)], [("b", 1.0, 1.0)], weight=-1.0)
