"""Stage 5d: propagation — named pictures lend the words that say what they show to unnamed look-alikes.

Chosen and measured in bench/propagate.py (docs/relevance.md "Propagation (phase 1)" → "The chosen
variant, exactly"); bench/propagation.py imports the build side from here.

- **Lendable words** (`lendable`): the words of a picture's file stem, folder and title, description,
  keywords (`app.lexical.words`), without words under three letters, words with a digit, stopwords and
  the names cameras and phones give (`NOISE`: img, dsc, dcim, camera, roll, misc …). Never place, date,
  camera or the text read in the picture: those belong to one file.
- **Gate** (`lift`): a word lends only when its pictures look alike: the share of its pictures' 10
  nearest pictures that carry it, over the share a random picture would (≈ 1 for `2019` or `Holiday`
  spread with no regard to looks); `Spread.coherent` = 1.5. A word on one picture passes.
- **Borrowing** (`propagate`): a picture with no lendable word of its own takes its 3 nearest lenders
  by feature cosine, ω_j = clip((cos_j − 0.5) / 0.25, 0, 1), and borrows a word when the lenders
  carrying it hold ≥ half of their summed ω; it keeps ω = max ω_j and the lenders (`Lent`).
- **Query side** (`Lending.parts`): the propagated part b = ω × coverage, coverage = the share of the
  query's content words (`app.lexical.content_terms`) found among the borrowed words (a prefix from 4
  letters on, else the word or its plural, as the lexical tables match). The phase-1 design also
  multiplies by BM25 / best BM25 over a borrowed-words FTS table; this coverage-only form needs no
  FTS table. `app.fusion.fuse_parts` adds it with weight 2, under the clear-look guard.
- **Stored** (`store`, `stored`): the build computes the borrowing once the features and the catalog are
  written (app/writing.py, either engine; every `--update` again) and keeps it in the manifest's
  `borrowed` table; the service reads it (app/catalog.py), and computes it at open only for an index
  built before builds stored it. Past EXACT_MAX candidate rows the nearest rows come from a faiss HNSW
  graph (approximate) instead of every pair.
"""

from __future__ import annotations

import bisect
import importlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
BLOCK = 1024  # rows whose cosines to the lenders (or to every row) are held at once
EXACT_MAX = 50_000  # candidate rows compared exactly; more: a faiss HNSW graph (the faster from ~45k)
GRAPH_LINKS = 32  # the graph's links per row
GRAPH_EF = 64  # its construction and search breadth
DEPTH = 200  # borrowed hits fused per query, best first

Words = tuple[set[str], set[str]]  # a row's lendable words: of its file name, of its folder and text
Gates = Mapping[str, Callable[[np.ndarray, Sequence[set[str]]], dict[str, float]]]


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


def _rows_of(words_of: Sequence[set[str]]) -> dict[str, list[int]]:
    """Each word's rows."""
    rows_of: dict[str, list[int]] = {}
    for row, words in enumerate(words_of):
        for word in words:
            rows_of.setdefault(word, []).append(row)
    return rows_of


def _nearest(features: np.ndarray, rows: np.ndarray, among: np.ndarray | None, k: int) -> np.ndarray:
    """For each of `rows`, its k nearest rows of `among` (all rows when None; itself excluded), by cosine,
    as indices into `among`, best first: exact up to EXACT_MAX candidates, a faiss HNSW graph beyond."""
    pool = features if among is None else features[among]
    if len(pool) > EXACT_MAX:
        return _graph_nearest(features, pool, rows, among, k)
    found = []
    for first in range(0, len(rows), BLOCK):
        chunk = rows[first : first + BLOCK]
        similar = features[chunk] @ pool.T
        if among is None:
            similar[np.arange(len(chunk)), chunk] = -np.inf
        else:
            where = {int(row): i for i, row in enumerate(among)}
            for i, row in enumerate(chunk.tolist()):
                if row in where:
                    similar[i, where[row]] = -np.inf
        part = np.argpartition(-similar, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similar, part, axis=1), axis=1)
        found.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(found) if found else np.zeros((0, k), dtype=np.int64)


def _graph_nearest(
    features: np.ndarray, pool: np.ndarray, rows: np.ndarray, among: np.ndarray | None, k: int
) -> np.ndarray:
    """`_nearest` through a faiss HNSW graph over `pool` (inner product; approximate): rows × log(pool)."""
    faiss: Any = importlib.import_module("faiss")
    graph = faiss.IndexHNSWFlat(pool.shape[1], GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = GRAPH_EF
    graph.add(np.ascontiguousarray(pool, dtype=np.float32))
    graph.hnsw.efSearch = max(GRAPH_EF, k + 1)
    found = np.zeros((len(rows), k), dtype=np.int64)
    position = None if among is None else {int(row): i for i, row in enumerate(among)}
    for first in range(0, len(rows), BLOCK):
        chunk = rows[first : first + BLOCK]
        _, near = graph.search(np.ascontiguousarray(features[chunk], dtype=np.float32), k + 1)
        for i, row in enumerate(chunk.tolist()):
            itself = row if position is None else position.get(row, -2)
            kept = [int(j) for j in near[i] if j >= 0 and j != itself][:k]
            found[first + i] = kept + [kept[-1] if kept else 0] * (k - len(kept))
    return found


def lift(features: np.ndarray, words_of: Sequence[set[str]], k: int = 10) -> dict[str, float]:
    """Per word: how much likelier a carrier's k nearest rows (named or not) carry it than a random row does.

    About 1 for a word spread with no regard to looks ("Holiday" over a year's photos, a folder of
    unrelated pictures), more for a word whose pictures look alike; a word on one row has nothing
    against it (infinity).
    """
    rows_of = _rows_of(words_of)
    n = len(features)
    found = {word: float("inf") for word, rows in rows_of.items() if len(rows) < 2 or n < 3}
    if len(found) == len(rows_of):
        return found
    carriers = np.asarray(sorted({row for rows in rows_of.values() for row in rows}), dtype=np.int64)
    nearest = _nearest(features, carriers, None, min(k, n - 1))
    position = {int(row): i for i, row in enumerate(carriers)}
    for word, rows in rows_of.items():
        if word in found:
            continue
        near = nearest[[position[row] for row in rows]]
        held = int(
            np.isin(near, rows).sum()
        )  # the carriers' neighbours that carry it (rows, not n, per word)
        found[word] = held / near.size / ((len(rows) - 1) / (n - 1))
    return found


def closeness(similar: np.ndarray | float, low: float, high: float) -> np.ndarray:
    """ω = clip((cos − low) / (high − low), 0, 1): 0 for pictures no closer than unrelated ones, 1: twins."""
    omega: np.ndarray = np.clip((np.asarray(similar, dtype=np.float32) - low) / (high - low), 0.0, 1.0)
    return omega


@dataclass(frozen=True)
class Spread:
    """Build-time propagation constants (the defaults: the chosen variant)."""

    k: int = 3  # nearest lending rows consulted
    low: float = 0.5  # feature cosine at which a neighbour starts to count (ω = 0)
    high: float = 0.75  # … and counts fully (ω = 1)
    agree: float = 0.5  # a word is borrowed when its lenders hold this share of the neighbours' ω
    coherent: float | None = 1.5  # smallest gate statistic of a word that spreads (None: no gate)
    statistic: str = "lift"  # the gate's statistic: a name of `propagate`'s `gates` (bench: "pairwise")
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


def propagate(
    features: np.ndarray, words_of: Sequence[Words], spread: Spread = Spread(), gates: Gates | None = None
) -> dict[int, Lent]:
    """The rows that borrow words, and what they borrow (`features`: unit rows, one per `words_of`;
    `gates`: the gate statistics by name, `lift` alone when None)."""
    everything = [names | rest for names, rest in words_of]
    statistic = (gates or {"lift": lift})[spread.statistic]
    gate = statistic(features, everything) if spread.coherent is not None else {}
    lending = [
        {word for word in words if spread.coherent is None or gate[word] >= spread.coherent}
        for words in everything
    ]
    lenders = np.asarray([row for row, words in enumerate(lending) if words], dtype=np.int64)
    borrowed: dict[int, Lent] = {}
    targets = np.asarray(
        [row for row, own in enumerate(everything) if spread.everyone or not own], dtype=np.int64
    )
    k = min(spread.k, len(lenders) - (1 if spread.everyone else 0))
    if not len(lenders) or not len(targets) or k < 1:
        return borrowed
    nearest = _nearest(features, targets, lenders, k)
    for row, picked in zip(targets.tolist(), nearest, strict=True):
        near = [int(lenders[p]) for p in picked]
        omegas = closeness(features[near] @ features[row], spread.low, spread.high).tolist()
        lent = _borrowed(everything[row], near, omegas, lending, spread)
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


LENT_TABLE = "borrowed"  # in a generation's manifest: what each borrowing row took, written by the build
LENT_SQL = (
    f"CREATE TABLE IF NOT EXISTS {LENT_TABLE} (row INTEGER PRIMARY KEY, words TEXT NOT NULL, "
    "other TEXT NOT NULL, omega REAL NOT NULL, lenders TEXT NOT NULL, omegas TEXT NOT NULL)"
)


def store(connection: sqlite3.Connection, lent: Mapping[int, Lent]) -> None:
    """Write what each row borrowed into the manifest's LENT_TABLE (made empty first)."""
    connection.execute(LENT_SQL)
    connection.execute(f"DELETE FROM {LENT_TABLE}")
    connection.executemany(
        f"INSERT INTO {LENT_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                row,
                json.dumps(sorted(b.words)),
                json.dumps(sorted(b.other)),
                b.omega,
                json.dumps(b.lenders),
                json.dumps(b.omegas),
            )
            for row, b in sorted(lent.items())
        ],
    )


def stored(connection: sqlite3.Connection) -> dict[int, Lent] | None:
    """What the build stored of each row's borrowing; None when the index was built before it did."""
    sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    if not connection.execute(sql, (LENT_TABLE,)).fetchone()[0]:
        return None
    return {
        int(row): Lent(
            frozenset(json.loads(words)),
            frozenset(json.loads(other)),
            float(omega),
            tuple(int(lender) for lender in json.loads(lenders)),
            tuple(float(value) for value in json.loads(omegas)),
        )
        for row, words, other, omega, lenders, omegas in connection.execute(f"SELECT * FROM {LENT_TABLE}")
    }


def _term_pattern(term: str) -> re.Pattern[str]:
    """`app.lexical`'s test of one query word against a whole word: a prefix from 4 letters on, else the
    word or its plural (as a pattern, for the benches; `Lending.matching` finds the same words)."""
    if len(term) >= lexical.PREFIX_MIN and not term.isdigit():
        return re.compile(re.escape(term))
    return re.compile(rf"{re.escape(term)}s?$")


class Lending:
    """What an index's rows borrowed (`propagate`), with each borrowed word's rows, for the query side."""

    def __init__(self, lent: Mapping[int, Lent]) -> None:
        self.lent = dict(lent)
        self.rows_of: dict[str, list[int]] = {}
        for row, borrowed in self.lent.items():
            for word in borrowed.words | borrowed.other:
                self.rows_of.setdefault(word, []).append(row)
        self.words = sorted(self.rows_of)

    def __len__(self) -> int:
        return len(self.lent)

    def matching(self, term: str) -> list[str]:
        """The borrowed words one query word matches (`_term_pattern`): those it begins, from 4 letters on
        (found by bisection in the sorted words), else itself or its plural."""
        if len(term) < lexical.PREFIX_MIN or term.isdigit():
            return [word for word in (term, f"{term}s") if word in self.rows_of]
        found = []
        for word in self.words[bisect.bisect_left(self.words, term) :]:
            if not word.startswith(term):
                break
            found.append(word)
        return found

    def parts(
        self, query: str, allowed: np.ndarray | None = None, depth: int = DEPTH
    ) -> list[tuple[int, float]]:
        """(row, b = ω × coverage) of the rows whose borrowed words match the query, best first (among
        `allowed`, a row mask); coverage: the share of the query's content words they hold."""
        terms = lexical.content_terms(query)
        if not terms or not self.lent:
            return []
        covered: dict[int, int] = {}
        for term in terms:
            rows = {row for word in self.matching(term) for row in self.rows_of[word]}
            for row in rows:
                covered[row] = covered.get(row, 0) + 1
        found = [
            (row, self.lent[row].omega * count / len(terms))
            for row, count in covered.items()
            if allowed is None or (row < len(allowed) and allowed[row])
        ]
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:depth]
