"""Fusion of the vector and lexical rankings."""

from __future__ import annotations

import random

import pytest

from app.fusion import reciprocal_rank_fusion, weighted_sum


def vector_hits(count: int = 200, seed: int = 0) -> list[tuple[str, float]]:
    """A vector ranking: ids with cosine scores, best first, with ties (as float16 vectors give)."""
    rng = random.Random(seed)
    scores = sorted((round(rng.uniform(-0.2, 0.9), 2) for _ in range(count)), reverse=True)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(count)]
    return list(zip(ids, scores, strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_an_empty_lexical_list_keeps_the_vector_order_exactly(seed: int) -> None:
    vector = vector_hits(seed=seed)
    order = [key for key, _ in vector]
    assert [key for key, _ in reciprocal_rank_fusion([order, []])] == order
    assert [key for key, _ in reciprocal_rank_fusion([order, []], weights=[1.0, 3.0])] == order
    assert [key for key, _ in weighted_sum([vector, []])] == order
    assert [key for key, _ in weighted_sum([vector, []], weights=[0.3, 0.7])] == order


def test_a_strong_lexical_match_rises_to_the_top() -> None:
    order = [key for key, _ in vector_hits()]
    named = order[40]  # the photo called eiffel-tower.jpg, 41st by pixels alone
    assert reciprocal_rank_fusion([order, [named]])[0][0] == named
    assert weighted_sum([vector_hits(), [(named, 7.5), (order[90], 1.0)]])[0][0] == named


def test_lexical_only_ids_join_the_list() -> None:
    fused = [key for key, _ in reciprocal_rank_fusion([["a", "b"], ["z"]])]
    assert fused == ["a", "z", "b"]  # z ties with a at rank 1 and appears after it
    assert {key for key, _ in weighted_sum([[("a", 0.9), ("b", 0.1)], [("z", 3.0)]])} == {"a", "b", "z"}


def test_zero_weight_silences_a_list() -> None:
    order = ["a", "b", "c"]
    assert [key for key, _ in reciprocal_rank_fusion([order, ["c", "b"]], weights=[1.0, 0.0])] == order


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0]])
def test_bad_weights_are_refused(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=weights)
