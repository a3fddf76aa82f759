"""What bench/propagate.py measures: named pictures lend words to look-alikes, feedback, a guarded fusion.

Pure functions over one index's unit features (`features.npy`), its text-space vectors and the
words each row's name, folder and embedded text carry; the service's own rankings are their input
(bench/propagate.py computes them once per query). The build side (`lendable`, `lift`, `Spread`,
`Lent`, `propagate`) lives in app/propagation.py, which the service runs; this module adds the
bench's other gate (`coherence`) and the query-side variants.

- **Words a picture can lend** (`lendable`): the words of its file name, folder and titles, keywords or
  captions (`app.lexical.words`), without digits, words under three letters, stopwords and the names
  cameras and phones give (`NOISE`: img, dsc, dcim, camera, roll, misc …).
- **Coherence** (`coherence`): a word spreads only when its pictures look alike: the mean pairwise
  cosine of their features, as a share of the way from the collection's mean pairwise cosine to 1.
  A word on one picture has nothing against it (coherence 1).
- **Build-time propagation** (`propagate`): each target row's k nearest lending rows by feature
  cosine s; each neighbour weighs ω = clip((s − floor) / (1 − floor), 0, 1); a word's weight is the
  sum of ω over the neighbours carrying it, divided by k (similarity and agreement at once), kept
  from `keep` on; a row never borrows a word it carries itself.
- **Query side** (`borrowed_share`): the share of the query's content words a row borrowed, each at
  its weight (the words table's test: a prefix from 4 letters on, else the word or its plural).
- **Fusion** (`fuse`): app/fusion.py's sum (min-max scaled look over the window + w × coverage² ×
  BM25 / best) plus the propagated and look-alike gains; with a lead threshold, a best look that
  leads the second by that share of the window's range keeps first place against every weak gain
  (folder-only or partial name matches, borrowed words, look-alikes); with a margin, a weak gain of a
  picture whose look trails the best by that margin (cosine or share of the window's range) stays
  below the best look (docs/relevance.md "The clear-look margin"). The total divided by the sum
  of the weights is the score on [0, 1] that the ranking is sorted by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app import propagation as app_propagation
from app.propagation import NOISE, Lent, Spread, closeness, lendable, lift

__all__ = ["NOISE", "Lent", "Spread", "closeness", "coherence", "lendable", "lift", "propagate"]
EPSILON = 1e-6

Words = app_propagation.Words


def coherence(features: np.ndarray, words_of: Sequence[set[str]]) -> dict[str, float]:
    """Per word: (mean pairwise cosine of its rows − the collection's mean) / (1 − the collection's mean)."""
    n = len(features)
    gram = features @ features.T
    background = (float(gram.sum()) - float(np.trace(gram))) / max(n * (n - 1), 1)
    rows_of: dict[str, list[int]] = {}
    for row, words in enumerate(words_of):
        for word in words:
            rows_of.setdefault(word, []).append(row)
    found = {}
    for word, rows in rows_of.items():
        if len(rows) < 2:
            found[word] = 1.0
            continue
        block = gram[np.ix_(rows, rows)]
        mean = (float(block.sum()) - float(np.trace(block))) / (len(rows) * (len(rows) - 1))
        found[word] = (mean - background) / (1.0 - background)
    return found


GATES: app_propagation.Gates = {"lift": lift, "pairwise": coherence}


def propagate(features: np.ndarray, words_of: Sequence[Words], spread: Spread) -> dict[int, Lent]:
    """The rows that borrow words, and what they borrow (app/propagation.py, with the bench's gates)."""
    return app_propagation.propagate(features, words_of, spread, GATES)


@dataclass(frozen=True)
class Match:
    """One lexical hit as the fusion sees it."""

    row: int
    bm25: float
    coverage: float  # max(query share, name share): app.lexical.coverages
    query_share: float
    name_share: float
    name_matched: bool  # the file name matched (not only the folder or the text)


@dataclass(frozen=True)
class Fusion:
    """Fusion constants: app/fusion.py's and the guard's."""

    weight: float = 2.0  # LEXICAL_WEIGHT
    power: float = 2.0  # COVERAGE_POWER
    window: int = 200  # FUSION_WINDOW
    folder_factor: float = 1.0  # folder-only matches' gain × this
    lead: float | None = None  # the best look keeps first place from this lead on (None: never)
    strict: bool = False  # weak matches include names the query covers only in part (seahorse for "horse")
    extra_weight: float = 0.0  # the largest propagated / look-alike gain (for the [0, 1] score)
    margin: float | None = None  # a weak gain never lifts a picture this far behind the best look over it
    absolute: bool = False  # the margin in cosine (else a share of the window's cosine range)
    folders: bool = False  # the margin guards folder/text-only and borrowed gains only (not partial names)
    clear: float = 0.0  # the margin guards only when the best look leads the second by this share
    lent: bool = True  # the margin guards borrowed and look-alike gains too
    bare: bool = False  # the margin guards only when the best look has no gain of its own
    name_margin: float | None = None  # absolute margin for weak name matches (partial names)
    name_side: bool = False  # … only for names the query covers in part (name share < 1: `seahorse`)


def weak(match: Match, strict: bool = False) -> bool:
    """A match that does not name the picture fully: folder or text only, or query words left over
    (strict: or name letters the query leaves over)."""
    return not match.name_matched or match.query_share < 1.0 or (strict and match.name_share < 1.0)


def fuse(
    vector: Sequence[tuple[int, float]], hits: Sequence[Match], extra: dict[int, float], fusion: Fusion
) -> list[tuple[int, float]]:
    """(row, score in [0, 1]) best first: the fused head, then the vector ranking past the window."""
    head = list(vector[: fusion.window])
    scores: dict[int, float] = {}
    lead = 0.0
    if head:
        low, high = min(s for _, s in head), max(s for _, s in head)
        span = high - low
        for row, score in head:
            scores.setdefault(row, (score - low) / span if span > 0 else 1.0)
        if len(head) > 1 and span > 0:
            lead = (head[0][1] - head[1][1]) / span
    best = max((hit.bm25 for hit in hits), default=0.0)
    gains: dict[int, float] = {}
    capped: set[int] = set(extra)
    seen: set[int] = set()
    for hit in hits:
        if hit.row in seen:
            continue
        seen.add(hit.row)
        gain = fusion.weight * hit.coverage**fusion.power * max(hit.bm25 / best if best > 0 else 0.0, 0.0)
        gains[hit.row] = gain * (fusion.folder_factor if not hit.name_matched else 1.0)
        if weak(hit, fusion.strict):
            capped.add(hit.row)
    for row, gain in extra.items():
        gains[row] = gains.get(row, 0.0) + gain
    guarded = fusion.lead is not None and head and lead >= fusion.lead
    top = head[0][0] if head else -1
    folder_only = {hit.row for hit in hits if not hit.name_matched}
    if fusion.lent:
        folder_only |= set(extra)
    named_weak = {
        hit.row
        for hit in hits
        if hit.name_matched and (hit.name_share < 1.0 if fusion.name_side else weak(hit, fusion.strict))
    }
    cosines: dict[int, float] = {}
    for row, score in head:
        cosines.setdefault(row, score)
    bare = not fusion.bare or top not in gains
    for row, gain in gains.items():
        base = scores.get(row, 0.0)
        if guarded and row != top and row in capped:
            gain = min(gain * (1.0 - lead), max(1.0 - base - EPSILON, 0.0))
        elif (
            row != top
            and row in (folder_only if fusion.folders else capped if fusion.lent else capped - set(extra))
            and bare
            and behind(head, cosines, row, fusion, lead)
        ) or (
            fusion.name_margin is not None
            and row != top
            and row in named_weak
            and bare
            and head
            and (row not in cosines or head[0][1] - cosines[row] >= fusion.name_margin)
        ):
            gain = min(gain, max(1.0 - base - EPSILON, 0.0))
        scores[row] = base + gain
    order = {
        row: i
        for i, row in enumerate(dict.fromkeys([r for r, _ in head] + [h.row for h in hits] + list(extra)))
    }
    scale = 1.0 + fusion.weight + fusion.extra_weight
    fused = sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
    return [(row, score / scale) for row, score in fused] + past_window(vector, fusion.window, fused, scale)


def behind(
    head: Sequence[tuple[int, float]], cosines: dict[int, float], row: int, fusion: Fusion, lead: float
) -> bool:
    """Whether the row's look trails the best look by the fusion's margin (a row past the window does)."""
    if fusion.margin is None or not head or lead < fusion.clear:
        return False
    if row not in cosines:
        return True
    span = head[0][1] - head[-1][1]
    gap = head[0][1] - cosines[row]
    return gap >= fusion.margin if fusion.absolute else span > 0 and gap / span >= fusion.margin


def past_window(
    vector: Sequence[tuple[int, float]], window: int, fused: list[tuple[int, float]], scale: float
) -> list[tuple[int, float]]:
    """Rows past the window in the vector ranking's order, scored lowest fused × (1 + cos) / (1 + window's
    last cos): below every fused row, and in the order they are ranked."""
    done = {row for row, _ in fused}
    rest = [(row, score) for row, score in vector[window:] if row not in done]
    if not rest or not fused:
        return rest
    lowest, last = fused[-1][1] / scale, vector[min(window, len(vector)) - 1][1]
    return [(row, lowest * max(1.0 + score, 0.0) / max(1.0 + last, EPSILON)) for row, score in rest]


def mean_of(matrix: np.ndarray, rows: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of some rows of a matrix, as float32."""
    picked = np.asarray(matrix[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)[:, None]
    mean: np.ndarray = (picked * w).sum(axis=0) / max(float(w.sum()), EPSILON)
    return mean


def unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1."""
    return (vector / max(float(np.linalg.norm(vector)), EPSILON)).astype(np.float32)


def lookalike_gain(
    features: np.ndarray, sources: Sequence[int], weights: Sequence[float], low: float, high: float
) -> np.ndarray:
    """Each row's best ω (`closeness`) to a source row, times that source's weight."""
    similar = features @ np.asarray(features[np.asarray(sources, dtype=np.int64)], dtype=np.float32).T
    omega = closeness(similar, low, high) * np.asarray(weights, dtype=np.float32)
    best: np.ndarray = omega.max(axis=1)
    return best
