"""Fusion of ranked lists (vector and lexical): reciprocal rank fusion or a weighted sum of scores.

Pure functions over lists of ids, best first. Ties keep the order in which ids first appear, lists
taken in the given order, so fusing the vector ranking with an empty lexical ranking returns the
vector ranking unchanged: hybrid search over opaque file names ranks exactly as semantic search.

Wiring: hybrid mode (app/ranking.py `FusedCandidates`) fuses the best 200 vector candidates with
`app.lexical.search` over the same allowed rows by `reciprocal_rank_fusion`, then pages the fused
list. RRF needs no score calibration between BM25 and cosines; the weighted sum stays here for the
comparison on the benchmark's tune half, which has not been run yet.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60  # Cormack et al. 2009: the rank constant that damps the head of each list


def _order(lists: Sequence[Sequence[K]]) -> dict[K, int]:
    """Each id's position of first appearance, lists taken in order (the tie-break)."""
    first: dict[K, int] = {}
    for ranking in lists:
        for key in ranking:
            first.setdefault(key, len(first))
    return first


def _weights(count: int, weights: Sequence[float] | None) -> Sequence[float]:
    """One weight per list (1.0 each by default); refuse a length mismatch or a negative weight."""
    if weights is None:
        return [1.0] * count
    if len(weights) != count or any(weight < 0 for weight in weights):
        raise ValueError(f"need {count} non-negative weights, got {list(weights)}")
    return weights


def _sorted(scores: dict[K, float], first: dict[K, int]) -> list[tuple[K, float]]:
    """(id, score) by score, best first; ties in order of first appearance."""
    return sorted(scores.items(), key=lambda item: (-item[1], first[item[0]]))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[K, float]]:
    """Σ weight / (k + rank) over the lists holding each id (rank from 1), best first."""
    factors = _weights(len(rankings), weights)
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, factors, strict=True):
        for rank, key in enumerate(dict.fromkeys(ranking), start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return _sorted(scores, _order(rankings))


def weighted_sum(
    scored: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Σ weight × score min-max scaled to [0, 1] within its list (absent: 0), best first.

    Each list is (id, score) with larger scores better, sorted best first. A list whose scores are all
    equal scales them to 1.
    """
    factors = _weights(len(scored), weights)
    scores: dict[K, float] = {}
    for pairs, weight in zip(scored, factors, strict=True):
        if not pairs:
            continue
        values = [score for _, score in pairs]
        low, span = min(values), max(values) - min(values)
        for key, score in dict(reversed(pairs)).items():  # a repeated id keeps its best (first) score
            scaled = (score - low) / span if span > 0 else 1.0
            scores[key] = scores.get(key, 0.0) + weight * scaled
    return _sorted(scores, _order([[key for key, _ in pairs] for pairs in scored]))
