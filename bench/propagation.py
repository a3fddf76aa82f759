"""What bench/propagate.py measures: named pictures lend words to look-alikes, feedback, a guarded fusion.

Pure functions over one index's unit features (`features.npy`), its text-space vectors and the
words each row's name, folder and embedded text carry; the service's own rankings are their input
(bench/propagate.py computes them once per query). Phase 2 ports the winner into app/.

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
  (folder-only or partial name matches, borrowed words, look-alikes). The total divided by the sum
  of the weights is the score on [0, 1] that the ranking is sorted by.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from app import lexical

_NOISE = (
    "img image images dsc dscn dscf dcim pxl mvimg vid pano burst photo photos pic pics picture pictures "
    "camera roll misc miscellaneous new folder copy untitled screenshot screenshots screen shot edit edited "
    "final export exported download downloads desktop documents whatsapp wa snapchat instagram upload "
    "uploads backup unsorted various other stuff"
)
NOISE = frozenset(_NOISE.split())
MIN_LETTERS = 3
EPSILON = 1e-6


Words = tuple[set[str], set[str]]  # a row's lendable words: of its file name, of its folder and text


def lendable(texts: Iterable[str]) -> set[str]:
    """The words of a name, folder or title that may say what a picture shows."""
    return {
        word
        for text in texts
        for word in lexical.words(text)
        if len(word) >= MIN_LETTERS
        and not any(char.isdigit() for char in word)
        and word not in lexical.STOPWORDS
        and word not in NOISE
    }


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


def lift(features: np.ndarray, words_of: Sequence[set[str]], k: int = 10) -> dict[str, float]:
    """Per word: how much likelier a carrier's k nearest rows (named or not) carry it than a random row does.

    About 1 for a word spread with no regard to looks ("Holiday" over a year's photos, a folder of
    unrelated pictures), more for a word whose pictures look alike; a word on one row has nothing
    against it (infinity).
    """
    rows_of: dict[str, list[int]] = {}
    for row, words in enumerate(words_of):
        for word in words:
            rows_of.setdefault(word, []).append(row)
    n = len(features)
    found = {word: float("inf") for word, rows in rows_of.items() if len(rows) < 2 or n < 3}
    carriers = sorted({row for rows in rows_of.values() for row in rows})
    if len(found) == len(rows_of):
        return found
    k = min(k, n - 1)
    similar = features[np.asarray(carriers, dtype=np.int64)] @ features.T
    similar[np.arange(len(carriers)), carriers] = -np.inf
    nearest = np.argpartition(-similar, k - 1, axis=1)[:, :k]
    position = {row: i for i, row in enumerate(carriers)}
    for word, rows in rows_of.items():
        if word in found:
            continue
        holds = np.zeros(n, dtype=bool)
        holds[rows] = True
        share = float(holds[nearest[[position[row] for row in rows]]].mean())
        found[word] = share / ((len(rows) - 1) / (n - 1))
    return found


def closeness(similar: np.ndarray | float, low: float, high: float) -> np.ndarray:
    """ω = clip((cos − low) / (high − low), 0, 1): 0 for pictures no closer than unrelated ones, 1: twins."""
    omega: np.ndarray = np.clip((np.asarray(similar, dtype=np.float32) - low) / (high - low), 0.0, 1.0)
    return omega


@dataclass(frozen=True)
class Spread:
    """Build-time propagation constants."""

    k: int = 3  # nearest lending rows consulted
    low: float = 0.5  # feature cosine at which a neighbour starts to count (ω = 0)
    high: float = 0.75  # … and counts fully (ω = 1)
    agree: float = 0.5  # a word is borrowed when its lenders hold this share of the neighbours' ω
    coherent: float | None = 0.1  # smallest coherence of a word that spreads (None: no gate)
    statistic: str = "pairwise"  # coherence: "pairwise" (`coherence`) or "lift" (`lift`)
    everyone: bool = False  # rows with words of their own borrow too (else only rows without any)

    def label(self) -> str:
        """How the tables name it."""
        gate = "no gate" if self.coherent is None else f"{self.statistic}≥{self.coherent:g}"
        who = "all" if self.everyone else "unnamed"
        return f"k={self.k} ω {self.low:g}→{self.high:g} agree={self.agree:g} {gate} {who}"


@dataclass(frozen=True)
class Lent:
    """What one row borrowed: name words, other words (folders, titles), its closest lender's ω, lenders."""

    words: frozenset[str]  # from the lenders' file names
    other: frozenset[str]  # from their folders, titles, keywords
    omega: float
    lenders: tuple[int, ...]
    omegas: tuple[float, ...] = ()  # each lender's ω


def propagate(features: np.ndarray, words_of: Sequence[Words], spread: Spread) -> dict[int, Lent]:
    """The rows that borrow words, and what they borrow."""
    everything = [names | rest for names, rest in words_of]
    statistic = lift if spread.statistic == "lift" else coherence
    gate = statistic(features, everything) if spread.coherent is not None else {}
    lending = [
        {word for word in words if spread.coherent is None or gate[word] >= spread.coherent}
        for words in everything
    ]
    lenders = np.asarray([row for row, words in enumerate(lending) if words], dtype=np.int64)
    borrowed: dict[int, Lent] = {}
    if not len(lenders):
        return borrowed
    similar = features @ features[lenders].T
    similar[lenders, np.arange(len(lenders))] = -np.inf  # never one's own neighbour
    k = min(spread.k, len(lenders))
    nearest = np.argsort(-similar, axis=1)[:, :k]
    omegas = closeness(np.take_along_axis(similar, nearest, axis=1), spread.low, spread.high)
    for row, own in enumerate(everything):
        if own and not spread.everyone:
            continue
        near = [int(lenders[p]) for p in nearest[row]]
        lent = _borrowed(own, near, omegas[row].tolist(), lending, spread)
        if lent is not None:
            named = {word for lender in lent.lenders for word in words_of[lender][0]}
            borrowed[row] = Lent(
                lent.words & named, lent.words - named, lent.omega, lent.lenders, lent.omegas
            )
    return borrowed


def _borrowed(
    own: set[str], near: list[int], omegas: list[float], lending: Sequence[set[str]], spread: Spread
) -> Lent | None:
    """What one row borrows from its nearest lenders: the words holding `agree` of their ω."""
    mass: dict[str, float] = {}
    for lender, omega in zip(near, omegas, strict=True):
        for word in lending[lender] - own if omega > 0 else ():
            mass[word] = mass.get(word, 0.0) + omega
    total = sum(omegas)
    words = frozenset(word for word, held in mass.items() if held >= spread.agree * total)
    if not words:
        return None
    chosen = [(lender, omega) for lender, omega in zip(near, omegas, strict=True) if omega > 0]
    return Lent(
        words, frozenset(), max(omegas), tuple(lender for lender, _ in chosen), tuple(o for _, o in chosen)
    )


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
    for row, gain in gains.items():
        base = scores.get(row, 0.0)
        if guarded and row != top and row in capped:
            gain = min(gain * (1.0 - lead), max(1.0 - base - EPSILON, 0.0))
        scores[row] = base + gain
    order = {
        row: i
        for i, row in enumerate(dict.fromkeys([r for r, _ in head] + [h.row for h in hits] + list(extra)))
    }
    scale = 1.0 + fusion.weight + fusion.extra_weight
    fused = sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
    return [(row, score / scale) for row, score in fused] + past_window(vector, fusion.window, fused, scale)


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
