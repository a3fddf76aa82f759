"""Fusion of the vector and lexical rankings: a coverage-aware weighted sum, guarded, on a 0–1 scale.

semantic part s = (cosine − worst cosine) / (best − worst cosine), over the vector window (0 outside it);
lexical part  ℓ = coverage^COVERAGE_POWER × BM25 / best BM25 of the query (0 without a match);
propagated part b = ω × coverage of the words the picture borrowed from named look-alikes
(app/propagation.py; 0 without), total = s + LEXICAL_WEIGHT × ℓ + PROPAGATED_WEIGHT × b, and the
score = total / the best total of the query ∈ [0, 1]: the value the fused list is sorted by (1 = the
query's best result), with s, ℓ and b as its parts.

Clear-look guard: when the best look leads the second by L = (c₁ − c₂) / (c₁ − c_last) ≥ GUARD_LEAD
of the window's range, a weak lexical match (no file-name match, or a name that covers only part of
the query: a folder `cats/` for "a cat", `red-apple.jpg` for "a red car"), and every borrowed
gain, gains at most (LEXICAL_WEIGHT × ℓ + PROPAGATED_WEIGHT × b) × (1 − L), and never enough to reach
the best look (its total stays below 1). A
full name match still rises over it: naming is stronger evidence than one clear look. Simulated in
bench/propagation.py (`Fusion(lead=…)`, docs/relevance.md "Propagation (phase 1)") and measured
through `SearchService` (`bench.relevance --names mixed|real --split tune`, docs/relevance.md "Sort
and cutoff"): lead 0.7 keeps real and named queries exactly as before and lifts the unnamed ones'
R@1 (+1.6); lead 0.5, or also guarding names that the query covers only in part (`seahorse.jpg` for
"a horse"), lifts them more (+2.5) but costs a named query and a real one. The nine-photo "a cat"
case (lead 0.91) puts the cat first (7th before).

Clear-look margin (per picture, when the lead does not guard): while the best look gains nothing itself
(no lexical match, nothing borrowed), a folder- or place-only gain (words many pictures share, not a
file name, title, keyword or text read in the picture: `LexicalHit.own` = 0) or a borrowed one, of
a picture whose cosine trails the best look's by c₁ − cᵢ ≥ GUARD_MARGIN (or that lies past the window),
is capped so that the picture stays below the best look by MARGIN_BELOW of its
semantic gap: total ≤ 1 − MARGIN_BELOW × (1 − s). Guarded pictures keep their look order among
themselves, above every picture that gains nothing and looks worse. The demo gallery's "a cat" (lead
0.22): the cat photo first, then the five `cats/` stamps (tigers, lions) in their look order, where
the folder lifted all five over it. A file name the query explains only in part (`seahorse.jpg` for
"a horse", NAME_MARGIN) keeps its gain: on the tune half a margin of 0.2 – 0.3 on such names gave the
unnamed queries 2 first places and cost a named one (`t_shirt.png` for "a folded shirt"). A margin
relative to the window's range, on every weak match, or one that holds when the best look matches
too, cost 1 – 3 of the 39 generic class-word queries (or 22 named ones); the chosen form leaves every
tune-half caption figure and the generic R@1 / R@10 as they were (docs/relevance.md "The clear-look
margin (2026-12-07)").

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

from collections.abc import Hashable, Mapping, Sequence
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)

LEXICAL_WEIGHT = 2.0  # a full-coverage best lexical match gains twice the whole cosine range
COVERAGE_POWER = 2  # a match of half the query's words gains a quarter of that
PROPAGATED_WEIGHT = 2.0  # a full borrowed match of the closest look-alike gains as much as a full name
GUARD_LEAD = 0.7  # the best look's lead over the second, as a share of the window's range, that guards it
GUARD_MARGIN = 0.1  # cosine by which a picture trails a bare best look for its folder-only gain to stay below
NAME_MARGIN = float("inf")  # … for a name the query explains in part (`seahorse` for "horse"): never
MARGINS = (GUARD_MARGIN, NAME_MARGIN)
MARGIN_BELOW = 0.1  # such a picture stays below the best look by this share of its semantic gap to it
MARGIN_LENT = True  # the margin guards borrowed gains as folder-only ones (bench.propagate measures both)
EPSILON = 1e-6

# A lexical hit: (id, BM25, coverage), (id, BM25, coverage, weak) or (id, BM25, coverage, weak, own);
# weak: not a full file-name match (`app.lexical.LexicalHit.weak`); own: how fully the picture's own words
# explain the query — the share of its file name's letters, 1 for its titles or the text read in it, 0 for
# its folder or place only (`LexicalHit.own`; the margin's classes).
LexicalInput = tuple[K, float, float] | tuple[K, float, float, bool] | tuple[K, float, float, bool, float]


class Fused(NamedTuple, Generic[K]):
    """One fused result: its score on [0, 1] (what the list is sorted by) and its parts, each on [0, 1]."""

    key: K
    score: float
    semantic: float
    lexical: float
    propagated: float = 0.0


def fuse(
    vector: Sequence[tuple[K, float]],
    lexical: Sequence[LexicalInput[K]],
    weight: float = LEXICAL_WEIGHT,
    power: float = COVERAGE_POWER,
    lead: float | None = GUARD_LEAD,
    margin: tuple[float, float] | None = MARGINS,
) -> list[tuple[K, float]]:
    """(id, score ∈ [0, 1]) best first (`fuse_parts` without the parts)."""
    found = fuse_parts(vector, lexical, weight, power, lead, margin=margin)
    return [(hit.key, hit.score) for hit in found]


def fuse_parts(
    vector: Sequence[tuple[K, float]],
    lexical: Sequence[LexicalInput[K]],
    weight: float = LEXICAL_WEIGHT,
    power: float = COVERAGE_POWER,
    lead: float | None = GUARD_LEAD,
    borrowed: Mapping[K, float] | None = None,
    margin: tuple[float, float] | None = MARGINS,
) -> list[Fused[K]]:
    """The fused list best first, from (id, cosine) best first, lexical hits best first and the
    propagated parts b of the rows whose borrowed words match (`borrowed`, each on [0, 1]).

    Cosines are min-max scaled to [0, 1] over the vector list (all 1 when equal); BM25 is divided by
    the best one, times coverage^power; the total s + weight × ℓ + PROPAGATED_WEIGHT × b (guarded:
    module docstring) is divided by the best total. A repeated id keeps its first entry; `lead` None
    turns the lead guard off, `margin` (folder-only, partly named) None the margin guard.
    """
    if weight < 0:
        raise ValueError(f"the lexical weight must be non-negative, got {weight}")
    semantic = _scaled(vector)
    parts = _lexical_parts(lexical, power)
    lent = borrowed or {}
    guard = _guard(vector, lead, margin, parts, lent)
    cosines = _cosines(vector)
    totals: dict[K, float] = {}
    for key in dict.fromkeys([k for k, _ in vector] + list(parts) + list(lent)):
        base, (part, weak, own) = semantic.get(key, 0.0), parts.get(key, (0.0, False, None))
        share = lent.get(key, 0.0)
        gain = weight * part + PROPAGATED_WEIGHT * share
        if key != guard.top and gain > 0:
            behind = guard.margin_of(own if part > 0 else None, MARGIN_LENT and share > 0)
            gain = guard.guarded(gain, base, cosines.get(key), weak or share > 0, behind)
        totals[key] = base + gain
    order = {key: i for i, key in enumerate(totals)}
    ranked = sorted(totals.items(), key=lambda item: (-item[1], order[item[0]]))
    best = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
    return [
        Fused(key, total / best, semantic.get(key, 0.0), parts.get(key, (0.0,))[0], lent.get(key, 0.0))
        for key, total in ranked
    ]


class _Guard(NamedTuple):
    """The clear-look guards of one query (module docstring)."""

    top: object  # the best look's id (None without a vector list)
    lead: float | None  # the best look's lead over the second when it guards every weak gain
    best: float | None  # the best look's cosine when the margin guards (it has no gain of its own)
    margins: tuple[float, float]

    def margin_of(self, own: float | None, lent: bool) -> float | None:
        """The margin that guards a picture's gain: by how fully its own words explain the query (None: no
        lexical part, or not given), and whether it is borrowed; None when none guards it."""
        found = [self.margins[0]] if lent or own == 0.0 else []
        found += [self.margins[1]] if own is not None and 0.0 < own < 1.0 else []
        return min(found) if found and self.best is not None else None

    def guarded(
        self, gain: float, base: float, cosine: float | None, weak: bool, margin: float | None
    ) -> float:
        """The gain of a picture with semantic part `base` and `cosine` (None past the list), guarded:
        `weak` by the lead, by `margin` (`margin_of`) when it trails the best look by that much."""
        if self.lead is not None and weak:
            return min(gain * (1.0 - self.lead), max(1.0 - base - EPSILON, 0.0))
        if margin is None or self.best is None or (cosine is not None and self.best - cosine < margin):
            return gain
        return min(gain, (1.0 - base) * (1.0 - MARGIN_BELOW))


def _guard(
    vector: Sequence[tuple[K, float]],
    lead: float | None,
    margin: tuple[float, float] | None,
    parts: Mapping[K, tuple[float, bool, float | None]],
    lent: Mapping[K, float],
) -> _Guard:
    """The guards of a query: the lead guard from `lead` on, the margin while the best look gains nothing."""
    if not vector:
        return _Guard(None, None, None, (0.0, 0.0))
    top, best = vector[0]
    leading = _lead(vector)
    bare_top = parts.get(top, (0.0,))[0] <= 0 and lent.get(top, 0.0) <= 0
    return _Guard(
        top,
        leading if lead is not None and leading >= lead else None,
        best if margin is not None and bare_top else None,
        margin or (0.0, 0.0),
    )


def _cosines(vector: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Each id's cosine (a repeated id keeps its first)."""
    found: dict[K, float] = {}
    for key, score in vector:
        found.setdefault(key, score)
    return found


def _scaled(vector: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Each id's cosine min-max scaled over the list (all 1 when equal); a repeated id keeps its first."""
    scaled: dict[K, float] = {}
    if vector:
        cosines = [score for _, score in vector]
        low, span = min(cosines), max(cosines) - min(cosines)
        for key, score in vector:
            scaled.setdefault(key, (score - low) / span if span > 0 else 1.0)
    return scaled


def _lexical_parts(
    lexical: Sequence[LexicalInput[K]], power: float
) -> dict[K, tuple[float, bool, float | None]]:
    """Each id's lexical part coverage^power × BM25 / best BM25, whether its match is weak, and the
    share of its file name the query explains (None when not given)."""
    best = max((hit[1] for hit in lexical), default=0.0)
    parts: dict[K, tuple[float, bool, float | None]] = {}
    for hit in lexical:
        key, score, coverage = hit[0], hit[1], hit[2]
        weak = bool(hit[3]) if len(hit) > 3 else False
        own = float(hit[4]) if len(hit) > 4 else None
        scaled = score / best if best > 0 else 0.0
        parts.setdefault(key, (coverage**power * max(scaled, 0.0), weak, own))
    return parts


def _lead(vector: Sequence[tuple[K, float]]) -> float:
    """How far the best cosine leads the second, as a share of the list's range (0 with < 2 entries)."""
    if len(vector) < 2:
        return 0.0
    span = vector[0][1] - min(score for _, score in vector)
    return (vector[0][1] - vector[1][1]) / span if span > 0 else 0.0
