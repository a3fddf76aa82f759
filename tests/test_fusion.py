"""Fusion of the vector and lexical rankings: full name matches rise, partial ones do not beat the look."""

from __future__ import annotations

import random

import pytest

from app.fusion import fuse, fuse_parts


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


def demo_vector(*extra: tuple[int, float]) -> list[tuple[int, float]]:
    """The demo gallery's vector list for "a cat" (row, cosine after the re-ranks), 200 long."""
    head = [(2, 0.8017), (125, 0.6632), (126, 0.6283), (124, 0.4739), (123, 0.4548), (150, 0.3543), *extra]
    filler = [
        (1000 + i, round(0.35 - i * (0.35 - 0.1796) / (199 - len(head)), 4)) for i in range(200 - len(head))
    ]
    return head + filler


# The five stamps of stamps/animals/mammals/cats/: (row, BM25, coverage, weak, own): the folder only.
BIG_CATS = [(124, 4.486, 1.0, True, 0.0), (125, 4.486, 1.0, True, 0.0), (123, 4.136, 1.0, True, 0.0)]
BIG_CATS += [(126, 4.136, 1.0, True, 0.0), (127, 4.136, 1.0, True, 0.0)]


def test_a_clear_cat_photo_stays_above_big_cats_that_match_only_by_their_folder() -> None:
    fused = fuse_parts(demo_vector(), BIG_CATS)  # the best look leads the second by 0.22 only
    assert [found.key for found in fused][:6] == [2, 125, 126, 124, 123, 127]  # main: the cat 6th
    scores = [found.score for found in fused]
    assert scores[0] == 1.0 and scores[:6] == sorted(scores[:6], reverse=True) and len(set(scores[:6])) == 6
    assert all(found.lexical == 1.0 or found.lexical > 0.8 for found in fused[1:6])  # the folder still counts
    assert [found.key for found in fused][6] == 150  # and lifts the big cats over every other picture


def test_a_full_file_name_match_still_rises_over_a_clear_look_that_leads_by_a_margin() -> None:
    named = (150, 3.0, 1.0, False, 1.0)  # cat.jpg, 6th by its look, weaker BM25 than the folder's
    fused = fuse_parts(demo_vector(), [*BIG_CATS, named])
    assert [found.key for found in fused][:2] == [150, 2]


def test_a_folder_match_still_rises_over_a_best_look_that_is_close() -> None:
    vector = demo_vector()
    vector[1] = (125, 0.75)  # the tiger's look trails the cat's by 0.05 only
    fused = fuse_parts(vector, BIG_CATS)
    assert [found.key for found in fused][:3] == [125, 2, 126]  # the far big cats stay below the cat


def test_a_folder_match_ranks_as_before_when_the_best_look_matches_the_folder_too() -> None:
    folder = [(2, 3.0, 1.0, True, 0.0), *BIG_CATS]  # the cat photo is in cats/ as well
    fused = fuse_parts(demo_vector(), folder)
    assert [found.key for found in fused][:3] == [125, 126, 124]  # look + folder, as without the margin


def test_a_name_the_query_explains_only_in_part_still_rises_over_a_clear_look() -> None:
    seahorse = (150, 9.0, 1.0, False, 0.75)  # "a horse": every query word, three quarters of the name
    assert fuse_parts(demo_vector(), [seahorse])[0].key == 150  # a name is evidence: no margin for it
    guarded = fuse_parts(demo_vector(), [seahorse], margin=(0.1, 0.2))  # measured, not kept
    assert [found.key for found in guarded][:2] == [2, 150]
