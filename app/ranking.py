"""Ranking: one request's page from one vector search, one visual re-rank and one near-duplicate fold.

The request path: `rank` takes the searcher of a space from the index and opens one `Scan` of it
(one vector search); `Candidates` reads that ranking best first, re-ranks its best `RERANK_POOL`
once by their look when a text query has a visual hint, and lets later reads go deeper without
searching or re-ranking again; `page` folds near-duplicates as it reads and cuts the page.
`page` takes any `Ranking`: a filtered one (`rank(..., rows=…)`: the searcher ranks only a filter's
rows, inside the search), a scored one (`FusedCandidates`: the vector ranking on the 0–1 relevance
scale, in hybrid mode merged with the lexical one by the guarded, coverage-aware weighted sum of
app/fusion.py), a lexical one, one with pinned rows first, or one cut at a score (`AtLeast`).

Visual re-rank: for a text query with a `VisualHint` (what its words look like, app/references.py),
its best `RERANK_POOL` matches are re-scored by (cosine + weight·look) / (1 + weight), look =
(1 + cos(direction, unit feature)) / 2 ∈ [0, 1]; rows past the pool keep their order with look = 0,
so scores never increase down the ranking and pages stay stable.

Class re-rank: a text query whose noun names WordNet synsets with ImageNet classes at or below them
(`ClassHint`, app/labels.py: "an animal", "a bird", "a sports car") adds weight × the summed stored
probability of those classes (the top labels each image keeps in the manifest) to each pooled
score, then divides by (1 + weight); rows past the pool are divided alike, so the same guarantees
hold.

Near-duplicate folding: two indexed images are near-duplicates when the cosine of their unit visual
features (`features.npy`: the image model's pooled features, flip-averaged) reaches the threshold
(`IMGSEARCH_DEDUP_THRESHOLD`, default `app.options.DEFAULT_DEDUP_THRESHOLD`; 0 turns folding off). Ranked
candidates are walked best first: each one joins the most similar representative kept so far when
that cosine reaches the threshold, and otherwise becomes a representative itself. Paging counts
groups, so `offset` and `top_k` mean the same with and without folding; a result lists the copies
found among the candidates read for its page (at least `2 × (offset + top_k) + 16`, doubled until
the page and one group past it are full). The greedy walk costs candidates² × dimensions, so only
the best `MAX_WINDOW` candidates are folded: deeper results (past about 4,000 images into one
ranking) come unfolded.

Measured with the `packaged` profile (EfficientNet-Lite0) on 21 bundled scikit-image photos and
549 Tux Paint stamps (drawings; the 60-stamp sample for copies), copy against its original:

| planted copy | photos: median (share ≥ 0.97) | stamps: median (share ≥ 0.97) |
|---|---|---|
| 1.5× larger + JPEG q90 | 1.000 (100 %) | |
| 0.75× size | 1.000 (95 %) | 0.986 (88 %) |
| 0.5× size | 0.997 (95 %) | 0.937 (23 %) |
| JPEG q85 / q75 / q50 | 0.999 / 0.995 / 0.984 (90 / 90 / 81 %) | 0.983 / 0.974 / 0.950 (73 / 57 / 32 %) |
| 0.5× size + JPEG q85 | 0.981 (76 %) | 0.885 (13 %) |
| 0.25× size / JPEG q30 | 0.918 (19 %) / 0.960 (43 %) | |
| mirrored | 1.000 (flip-averaged features) | 0.96 – 1.00 |

Distinct images: photo pairs 0.05 – 0.50 (210 pairs); stamp pairs median 0.25, 99.9th percentile
0.70 (150,426 pairs). Above 0.90 sit only variants of one drawing: traffic lights differing in the
lit lamp 0.99, dreidels with another letter 0.89 – 0.98, flags in other colours 0.89 – 0.93, the
"crossroads" and "T-junction" signs 0.969, polo shirt and T-shirt 0.94. Copies and variants
overlap, so no threshold separates them all; 0.97 keeps every measured pair of distinct objects
apart (colour variants aside: the features barely see colour) and folds light copies (resized
down to half size, re-encoded at JPEG quality 75 or better) of photos in 90 – 95 % of cases.
Fine-textured or small images (a fundus photo, the stamps) change most when down-scaled: such
copies stay separate, the safe side of the error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.errors import IndexMismatch
from app.fusion import LexicalInput, fuse_parts
from app.index import Index
from app.labels import ClassHint
from app.references import VisualHint
from app.searchers import Space
from app.vectors import Hits, Scan, read_rows

RERANK_POOL = 200  # best text matches of a query re-scored with its VisualHint
MIN_WINDOW = 64
MAX_WINDOW = 4096  # candidates folded per request: ≈0.3 s of one CPU core at 1280 dimensions
BLOCK = 256
# The summed stored probability of some labels among each row's top labels (`Index.label_mass`).
Mass = Callable[[list[int], frozenset[str]], list[float]]


@dataclass(frozen=True)
class Ranked:
    """A result row with its score and the rows of the near-duplicates folded into it, best first."""

    row: int
    score: float
    duplicate_rows: tuple[int, ...] = ()

    @property
    def duplicates(self) -> int:
        """How many near-duplicates were folded into this result."""
        return len(self.duplicate_rows)


def rerank_by_look(ranked: Hits, hint: VisualHint, features: np.ndarray) -> Hits:
    """Re-rank the best RERANK_POOL (row, cosine) pairs by (cosine + weight·look) / (1 + weight).

    look = (1 + cos(direction, unit feature)) / 2 ∈ [0, 1]; rows past the pool keep their order
    with look = 0, so scores never increase down the ranking and pages stay stable.
    """
    pool = ranked[:RERANK_POOL]
    rows = np.fromiter((row for row, _ in pool), dtype=np.int64, count=len(pool))
    looks = (1.0 + read_rows(features, rows) @ hint.direction) / 2.0
    return mix_into_pool(ranked, [float(look) for look in looks], hint.weight)


def mix_into_pool(ranked: Hits, bonus: Sequence[float], weight: float) -> Hits:
    """The best RERANK_POOL re-scored by (score + weight·bonus) / (1 + weight) and re-sorted; rows past
    the pool keep their order with bonus 0 (`bonus` in [0, 1], one per pooled row)."""
    pool, rest = ranked[:RERANK_POOL], ranked[RERANK_POOL:]
    scale = 1.0 + weight
    fused = [(row, (score + weight * extra) / scale) for (row, score), extra in zip(pool, bonus, strict=True)]
    fused.sort(key=lambda pair: -pair[1])
    return fused + [(row, score / scale) for row, score in rest]


def rerank_by_class(ranked: Hits, hint: ClassHint, mass: Mass) -> Hits:
    """Re-rank the best RERANK_POOL by (score + weight·p) / (1 + weight), p = the classes' stored probability.

    `mass` gives the summed stored probability of the classes for rows; rows past the pool keep their
    order with p = 0.
    """
    return mix_into_pool(ranked, mass([row for row, _ in ranked[:RERANK_POOL]], hint.labels), hint.weight)


class Candidates:
    """A request's one ranking, read best first; deeper reads extend it and never reorder what was read."""

    def __init__(
        self,
        scan: Scan,
        count: int,
        hint: VisualHint | None,
        features: np.ndarray,
        classes: ClassHint | None = None,
        mass: Mass | None = None,
    ) -> None:
        self.count = count  # rows that can be candidates
        self._scan, self._hint, self._features = scan, hint, features  # features: for the re-rank
        self._classes = classes if mass is not None else None
        self._mass = mass  # the classes' stored probability in rows: for the class re-rank
        self._read: Hits = []
        self._seen: set[int] = set()
        self._exhausted = False

    def head(self, depth: int) -> Hits:
        """The best `depth` candidates (fewer when the ranking runs out)."""
        depth = min(depth, self.count)
        if depth > len(self._read) and not self._exhausted:
            self._extend(depth)
        return self._read[:depth]

    def _extend(self, depth: int) -> None:
        """Read the scan deeper; the first read is re-ranked by look and class, later rows only rescaled."""
        first = not self._read
        if first and (self._hint is not None or self._classes is not None):
            depth = min(max(depth, RERANK_POOL), self.count)
        found = self._scan.top(depth)
        self._exhausted = len(found) < depth
        if first:
            if self._hint is not None:
                found = rerank_by_look(found, self._hint, self._features)
            if self._classes is not None and self._mass is not None:
                found = rerank_by_class(found, self._classes, self._mass)
        else:
            scale = (1.0 + (self._hint.weight if self._hint else 0.0)) * (
                1.0 + (self._classes.weight if self._classes else 0.0)
            )
            found = [(row, score / scale) for row, score in found]
        fresh = [(row, score) for row, score in found if row not in self._seen]
        self._read.extend(fresh)
        self._seen.update(row for row, _ in fresh)


@dataclass
class _Group:
    """A representative kept by the fold, and the rows folded into it so far."""

    row: int
    score: float
    members: list[int] = field(default_factory=list)


class Folding:
    """Near-duplicate folding that resumes: candidates added later continue the same best-first walk."""

    def __init__(self, features: np.ndarray, threshold: float) -> None:
        self._features, self._threshold = features, threshold
        self.seen = 0  # candidates walked so far
        self.groups: list[_Group] = []
        self._reps = np.empty((BLOCK, features.shape[1]), dtype=np.float32)  # in the order kept

    def add(self, ranked: Hits) -> None:
        """Walk the next ranked candidates, a block at a time."""
        if not ranked:
            return
        rows = np.fromiter((row for row, _ in ranked), dtype=np.int64, count=len(ranked))
        candidates = read_rows(self._features, rows)
        for first in range(0, len(ranked), BLOCK):
            self._fold_block(ranked[first : first + BLOCK], candidates[first : first + BLOCK])
        self.seen += len(ranked)

    def _fold_block(self, hits: Hits, block: np.ndarray) -> None:
        """Fold one block: earlier representatives in one product, the block itself via its Gram matrix."""
        before = len(self.groups)
        if before + len(block) > len(self._reps):
            grown = np.empty((2 * (before + len(block)), self._reps.shape[1]), dtype=np.float32)
            grown[:before] = self._reps[:before]
            self._reps = grown
        if before:
            earlier = block @ self._reps[:before].T
            earlier_best = earlier.argmax(axis=1)
            earlier_value = earlier[np.arange(len(block)), earlier_best]
        else:
            earlier_best = np.full(len(block), -1)
            earlier_value = np.full(len(block), -np.inf, dtype=np.float32)
        gram = block @ block.T
        if not (earlier_value >= self._threshold).any() and not (np.triu(gram, 1) >= self._threshold).any():
            # No pair reaches the threshold (the usual case): every candidate is a representative.
            self._reps[before : before + len(block)] = block
            self.groups.extend(_Group(row, score) for row, score in hits)
            return
        fresh = np.zeros(len(block), dtype=bool)  # block positions kept as representatives
        fresh_ranks = np.full(len(block), -1)  # their index among all representatives
        for i, (row, score) in enumerate(hits):
            best, similarity = int(earlier_best[i]), float(earlier_value[i])
            if fresh[:i].any():
                inner = np.where(fresh[:i], gram[i, :i], -np.inf)
                j = int(np.argmax(inner))
                if inner[j] > similarity:
                    best, similarity = int(fresh_ranks[j]), float(inner[j])
            if similarity >= self._threshold:
                self.groups[best].members.append(row)
            else:
                fresh[i], fresh_ranks[i] = True, len(self.groups)
                self._reps[len(self.groups)] = block[i]
                self.groups.append(_Group(row, score))

    def results(self) -> list[Ranked]:
        """The groups so far, best first."""
        return [Ranked(g.row, g.score, tuple(g.members)) for g in self.groups]


def collapse(ranked: Hits, features: np.ndarray, threshold: float) -> list[Ranked]:
    """Fold ranked (row, score) pairs into groups, best first; `features` are the index's unit rows."""
    folding = Folding(features, threshold)
    folding.add(ranked)
    return folding.results()


class Ranking(Protocol):
    """What `page` reads: a ranking best first, `count` rows deep at most."""

    count: int

    def head(self, depth: int) -> Hits:
        """The best `depth` rows (fewer when the ranking runs out)."""
        ...


def page(
    candidates: Ranking, top_k: int, offset: int, threshold: float, features: np.ndarray
) -> list[Ranked]:
    """Results offset..offset+top_k of the candidates, near-duplicates folded when threshold > 0."""
    wanted = offset + top_k
    if threshold <= 0:
        return [Ranked(row, score) for row, score in candidates.head(wanted)[offset:]]
    folding = Folding(features, threshold)
    window = min(candidates.count, max(2 * wanted + 16, MIN_WINDOW), MAX_WINDOW)
    while True:
        ranked = candidates.head(window)
        folding.add(ranked[folding.seen :])
        # One group past the page, so the last result on it has its own near-copies counted.
        if len(folding.groups) > wanted or len(ranked) < window or window >= candidates.count:
            return folding.results()[offset:wanted]
        if window >= MAX_WINDOW:
            break
        window = min(candidates.count, 2 * window, MAX_WINDOW)
    # Folding costs window² × dimensions: past MAX_WINDOW candidates, results come unfolded.
    rest = candidates.head(window + wanted - len(folding.groups))[window:]
    return (folding.results() + [Ranked(row, score) for row, score in rest])[offset:wanted]


def candidates(
    index: Index,
    query: np.ndarray,
    *,
    space: Space = "text",
    visual: VisualHint | None = None,
    rows: np.ndarray | None = None,
    classes: ClassHint | None = None,
) -> Candidates:
    """A query vector's one ranking of the index (of `rows` only, a filter's, when given)."""
    dim = (index.vectors if space == "text" else index.features).shape[1]
    if query.shape[-1] != dim:
        raise IndexMismatch(f"query has {query.shape[-1]} dimensions, index {dim}")
    if visual is not None and visual.direction.shape[-1] != index.features.shape[1]:
        raise IndexMismatch(
            f"visual hint has {visual.direction.shape[-1]} dimensions, features {index.features.shape[1]}"
        )
    searcher = index.searcher_for(space)
    scan = searcher.scan(query) if rows is None else searcher.scan(query, rows)
    count = index.count if rows is None else len(rows)
    return Candidates(
        scan, count, visual, index.features, classes, lambda at, names: index.label_mass(at, names)
    )


def rank(
    index: Index,
    query: np.ndarray,
    top_k: int,
    offset: int = 0,
    *,
    space: Space = "text",
    visual: VisualHint | None = None,
    threshold: float = 0.0,
    rows: np.ndarray | None = None,
    classes: ClassHint | None = None,
) -> list[Ranked]:
    """A page of results for a query vector in a space: one vector search, one re-rank, one fold.

    With `rows` (a filter's), only those rows are ranked, inside the search: the page is full
    whenever enough of them exist.
    """
    found = candidates(index, query, space=space, visual=visual, rows=rows, classes=classes)
    return page(found, top_k, offset, threshold, index.features)


class FusedCandidates:
    """A vector ranking on the 0–1 relevance scale, fused with lexical hits (`app.fusion.fuse_parts`).

    The best `window` vector candidates are min-max scaled (semantic part) and fused with `lexical`
    ((row, BM25, coverage, weak) best first) and `borrowed` (row → propagated part, app/propagation.py);
    each row's score is its fused total over the best one, the value the list is sorted by, and
    `parts` keeps its (semantic, lexical, propagated) parts. With no lexical
    rows the order is exactly the vector one, scored (c − c_last) / (c₁ − c_last). Past the fused head
    the vector ranking continues in its own order with score 0, so deeper pages never reorder what
    was read.
    """

    def __init__(
        self,
        vector: Ranking,
        lexical: Sequence[LexicalInput[int]],
        window: int,
        borrowed: Mapping[int, float] | None = None,
    ) -> None:
        self.count = vector.count
        self._vector = vector
        head = vector.head(window)
        self._depth = len(head)
        self.from_vector = {row for row, _ in head}  # rows the vector search ranked
        fused = fuse_parts(head, lexical, borrowed=borrowed)
        self.parts = {found.key: (found.semantic, found.lexical, found.propagated) for found in fused}
        self._read: Hits = [(found.key, found.score) for found in fused]
        self._seen = set(self.parts)

    def head(self, depth: int) -> Hits:
        """The best `depth` rows: the fused head, then the vector ranking past its window (score 0)."""
        depth = min(depth, self.count)
        while len(self._read) < depth:
            more = self._vector.head(self._depth + depth - len(self._read))
            if len(more) <= self._depth:
                break
            fresh = [(row, 0.0) for row, _ in more[self._depth :] if row not in self._seen]
            self._depth = len(more)
            self._read.extend(fresh)
            self._seen.update(row for row, _ in fresh)
            self.from_vector.update(row for row, _ in fresh)
        return self._read[:depth]


class AtLeast:
    """A ranking cut where its score falls below `floor` (a relevance cutoff, `min_score`)."""

    def __init__(self, ranking: Ranking, floor: float) -> None:
        self._ranking, self._floor = ranking, floor
        self.count = ranking.count

    def head(self, depth: int) -> Hits:
        """The best `depth` rows scoring at least the floor (read deeper only until the cut is seen)."""
        depth = min(depth, self.count)
        read = min(depth, MIN_WINDOW)
        while True:
            found = self._ranking.head(read)
            kept = [pair for pair in found if pair[1] >= self._floor]
            if len(kept) < len(found):
                self.count = len(kept)  # the cut is reached: no deeper read finds more
                return kept
            if read >= depth or len(found) < read:
                return kept
            read = min(2 * read, depth)


class Pinned:
    """A ranking with given rows first ("more like these": the liked images lead their own results)."""

    def __init__(self, first: Hits, rest: Ranking) -> None:
        self.count = rest.count
        self._first, self._rest = first, rest
        self._pinned = {row for row, _ in first}

    def head(self, depth: int) -> Hits:
        """The pinned rows, then the ranking without them."""
        rest = [pair for pair in self._rest.head(depth + len(self._first)) if pair[0] not in self._pinned]
        return (self._first + rest)[: min(depth, self.count)]


class LexicalCandidates:
    """Lexical mode: rows in the order of their name and metadata matches, scored relative to the best."""

    def __init__(self, hits: list[tuple[int, float]]) -> None:
        self.count = len(hits)
        best = hits[0][1] if hits and hits[0][1] > 0 else 1.0
        self._read: Hits = [(row, score / best) for row, score in hits]

    def head(self, depth: int) -> Hits:
        """The best `depth` matches."""
        return self._read[:depth]
