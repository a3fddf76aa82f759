"""Fusion of the vector and lexical rankings: a coverage-aware weighted sum of scaled scores.

score = (cosine − worst cosine) / (best − worst cosine), over the vector window (0 outside it),
      + LEXICAL_WEIGHT × coverage^COVERAGE_POWER × BM25 / best BM25 of the query (0 without a match).

Coverage (`app.lexical.coverages`: the larger of the share of the query's content words a row matches
and the share of its file name's letters the query matches) says how fully a name explains the query:
for "a red car", `red-car.jpg` has coverage 1 and gains up to 2 — twice the whole cosine range, so it
rises to the top — while `red-apple.jpg` (coverage 0.5) gains at most 0.5 and stays below a car whose
look is clearly better. Ties keep the order in which ids first appear (vector list first), so with
no lexical hit the fused list is the vector ranking unchanged: hybrid over opaque names ranks exactly
as semantic.

Chosen by measurement: `bench/fusion.py --split tune` (tune half of the Tux Paint stamps, 262
captions as queries, int8 encoder, one index; both rankings computed once per query, then fused in
Python). R@1 / nDCG@10 in percent; `real`: the stamps' own names and folders; `mixed`: a hashed half
named, the rest opaque; `unnamed`: the mixed queries whose pictures all have opaque names. Opaque
names: every variant 24.4 / 38.7, exactly semantic.

| variant | real | mixed | unnamed | |
|---|---|---|---|---|
| semantic | 24.4 / 38.7 | 24.4 / 38.7 | 25.4 / 38.1 | |
| RRF k=60, window 200 | 64.1 / 79.4 | 43.5 / 57.8 | 17.2 / 31.9 | the former default |
| RRF k=10, window 400 | 69.1 / 82.0 | 45.0 / 58.8 | 16.4 / 31.8 | best RRF |
| sum, w=2, window 200 | 84.0 / 89.5 | 55.7 / 63.3 | 16.4 / 31.3 | no coverage |
| sum, w=2, window 200, coverage | 84.0 / 89.8 | 56.1 / 64.0 | 18.0 / 33.2 | a half match gains 1 |
| sum, w=2, window 200, coverage² | 83.6 / 89.2 | 55.7 / 63.8 | 18.9 / 34.0 | **chosen** |

The sum beats the former RRF default by 12 – 20 points of R@1 on named collections (the best RRF
by 11 – 15): RRF's 1 / (k + rank) flattens the vector ranking, so any lexical hit in the window jumps
over the best visual matches. Coverage² costs 1 – 4 queries of 262 against the best sums and loses
fewer unnamed pictures to partial name matches; with coverage¹ (or w = 4 with coverage²) a half match
would gain the whole cosine range and `red-apple.jpg` could outrank every car for "a red car". Every
variant and R@5/R@10: docs/relevance.md.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

LEXICAL_WEIGHT = 2.0  # a full-coverage best lexical match gains twice the whole cosine range
COVERAGE_POWER = 2  # a match of half the query's words gains a quarter of that


def fuse(
    vector: Sequence[tuple[K, float]],
    lexical: Sequence[tuple[K, float, float]],
    weight: float = LEXICAL_WEIGHT,
    power: float = COVERAGE_POWER,
) -> list[tuple[K, float]]:
    """(id, fused score) best first, from (id, cosine) best first and (id, BM25, coverage) best first.

    Cosines are min-max scaled to [0, 1] over the vector list (all 1 when equal); BM25 is divided by
    the best one, times coverage^power ∈ [0, 1], times `weight`. A repeated id keeps its first entry.
    """
    if weight < 0:
        raise ValueError(f"the lexical weight must be non-negative, got {weight}")
    scores: dict[K, float] = {}
    if vector:
        cosines = [score for _, score in vector]
        low, span = min(cosines), max(cosines) - min(cosines)
        for key, score in vector:
            scores.setdefault(key, (score - low) / span if span > 0 else 1.0)
    best = max((score for _, score, _ in lexical), default=0.0)
    seen: set[K] = set()
    for key, score, coverage in lexical:
        if key in seen:
            continue
        seen.add(key)
        scaled = score / best if best > 0 else 0.0
        scores[key] = scores.get(key, 0.0) + weight * coverage**power * max(scaled, 0.0)
    order = {
        key: i for i, key in enumerate(dict.fromkeys([k for k, _ in vector] + [k for k, _, _ in lexical]))
    }
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
