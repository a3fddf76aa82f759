"""Propagation, feedback and a guarded fusion on the Tux Paint stamps: one index, every variant in Python.

The stamps are encoded once (an index built under their real names, cached with `--work`); each
staging of bench/relevance.py (`real`, `mixed`, `opaque`) gets an in-memory lexical index of the
names it would give the rows (bench/fusion.py's), each query is encoded and ranked once by the
service's vector path (`app.ranking.candidates`: look and class re-ranks included) and once
lexically, and every variant of bench/propagation.py is computed from those. A variant that changes
the query vector (feedback) ranks again through `app.ranking.candidates`. Scored: the captions of
one half on every staging (mixed: also its named and unnamed subsets) and the generic class-word
queries of bench/relevance.py on opaque names (and on mixed names, for information). The row
`shipped` is app/fusion.py's fusion and must equal `hybrid` through SearchService
(`bench.relevance --names … --short`). Choose on `--split tune` only.

    nice -n 19 .venv/bin/python -m bench.propagate --split tune --work /tmp/propagate/work
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from app import fusion as app_fusion, lexical, ranking
from app.assembly import service_over
from app.catalog import Catalog
from app.fusion import GUARD_LEAD, MARGIN_LENT, MARGINS, fuse_parts as shipped_fuse_parts
from app.index import Index
from app.lexical import LexicalDoc, LexicalHit
from app.pipeline import Pipeline, Query
from app.propagation import Lending
from app.references import VisualHint
from app.registry import prepare
from app.settings import Settings
from bench.fusion import captions, lexical_db, stamps_index
from bench.propagate_checks import GATES, noise_check, oracle
from bench.propagation import (
    Fusion,
    Lent,
    Match,
    Spread,
    Words,
    fuse,
    lendable,
    lookalike_gain,
    mean_of,
    propagate,
    unit,
    weak,
)
from bench.relevance import (
    KS,
    Naming,
    folders_of,
    generic_queries,
    half_recall,
    recall,
    staged_name,
    subsets,
)
from scripts.tuxpaint import BENCH_CACHE, Stamp, split_of

log = logging.getLogger("bench.propagate")

STAGINGS: tuple[Naming, ...] = ("real", "mixed", "opaque")
DEPTH = 200  # lexical hits per query (the service's LEXICAL_DEPTH)
Hits = list[tuple[int, float]]


@dataclass(frozen=True)
class Feedback:
    """Query-time feedback from the strongest lexical hits (names that cover the query)."""

    hits: int = 3  # strongest hits used
    coverage: float = 1.0  # smallest coverage of a hit used; folder-only hits never
    text: float = 0.0  # Rocchio weight of their mean text-space vector added to the query's
    look: float = 0.0  # weight of their mean feature added to the query's look direction
    alike: float = 0.0  # gain of a row that looks like one of them (bench/propagation lookalike_gain)
    low: float = 0.5  # feature cosine from which a look-alike counts (ω = 0) …
    high: float = 0.75  # … and counts fully (ω = 1)


@dataclass(frozen=True)
class Pixels:
    """Pseudo-relevance feedback from the best semantic matches alone."""

    top: int = 5
    text: float = 0.0
    look: float = 0.0
    pool: bool = False  # re-order the first ranking's best RERANK_POOL only (no second vector search)


@dataclass(frozen=True)
class Variant:
    """One way to rank: build-time propagation, feedback and fusion constants."""

    name: str
    spread: Spread | None = None
    spread_weight: float = 0.0
    spread_power: float = 1.0
    spread_cap: bool = False  # a borrowed gain never exceeds ω × a lender's own lexical gain
    feedback: Feedback | None = None
    pixels: Pixels | None = None
    fusion: Fusion = field(default_factory=Fusion)
    product: bool = False  # app/fusion.py as `SearchService` runs it, with the constants below
    margins: tuple[float, float] | None = MARGINS  # app/fusion.py's margins (folder-only, partly named)
    margin_lent: bool = MARGIN_LENT  # app/fusion.py's MARGIN_LENT


@dataclass
class Collection:
    """The one index and what every variant reads from it."""

    index: Index
    pipeline: Pipeline
    sources: list[str]
    features: np.ndarray
    vectors: np.ndarray
    stamp_of: dict[str, Stamp]
    relevant: dict[str, set[str]]  # captions
    generic: dict[str, set[str]]  # generic queries
    half_of: dict[str, str]
    encoded: dict[str, Query] = field(default_factory=dict)
    vector: dict[str, Hits] = field(default_factory=dict)

    def rank(self, text: str, vector: np.ndarray, visual: VisualHint | None) -> Hits:
        """The service's vector ranking of the whole index for a (possibly expanded) query."""
        classes = self.encoded[text].classes
        found = ranking.candidates(self.index, vector, visual=visual, classes=classes)
        return found.head(self.index.count)


@dataclass
class Staging:
    """One naming of the rows: its lexical hits per query and the words each row can lend."""

    name: Naming
    hits: dict[str, list[Match]]
    words_of: list[Words]
    named: set[str]  # sources that keep their own name
    borrowed: dict[Spread, tuple[sqlite3.Connection, dict[int, Lent]]] = field(default_factory=dict)
    lent_hits: dict[tuple[Spread, str], list[LexicalHit]] = field(default_factory=dict)
    lending: Lending | None = None  # the chosen propagation as the service reads it (`product`)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--split", choices=["report", "tune", "all"], default="tune")
    parser.add_argument("--work", type=Path, default=None, help="keep the index here between runs")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (prefixes) to run")
    return parser.parse_args(argv)


def digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generic_relevance(stamps: Path, selected: list[Stamp], sources: list[str]) -> dict[str, set[str]]:
    """Generic queries relevant to each indexed source: its folders' and those of byte-identical stamps."""
    folders = generic_queries(selected)
    indexed = {digest(stamps / source): source for source in sources}
    relevant: dict[str, set[str]] = {source: set() for source in sources}
    for stamp in selected:
        kept = indexed.get(digest(stamps / stamp.path))
        if kept is not None:
            relevant[kept] |= {folders[f] for f in folders_of(stamp.path) if f in folders}
    return relevant


def staging(collection: Collection, names: Naming, texts: list[str]) -> Staging:
    """The lexical hits of every query and the lendable words of every row under one naming."""
    connection = lexical_db(collection.index, collection.stamp_of, names)
    reader = Catalog(collection.index)
    try:
        stored = reader.metadata(list(range(collection.index.count)))
    finally:
        reader.close()
    words_of = []
    for row, source in enumerate(collection.sources):
        path = PurePosixPath(staged_name(collection.stamp_of[source], names))
        words_of.append((lendable([path.stem]), lendable([path.parent.as_posix(), stored[row].text])))
    named = {
        source for source in collection.sources if staged_name(collection.stamp_of[source], names) == source
    }
    return Staging(names, {text: matches_of(connection, text) for text in texts}, words_of, named)


def matches_of(connection: sqlite3.Connection, text: str) -> list[Match]:
    """One query's lexical hits as the fusion sees them."""
    hits = lexical.search(connection, text, DEPTH)
    shares = lexical.coverages(connection, text, [hit.row for hit in hits])
    return [Match(hit.row, hit.score, hit.coverage, *shares[hit.row], "name" in hit.matched) for hit in hits]


def expanded(collection: Collection, text: str, base: Hits, hits: list[Match], variant: Variant) -> Hits:
    """The vector ranking after feedback (from the strongest lexical hits, or the best looks), else `base`."""
    encoded = collection.encoded[text]
    vector, direction = encoded.vector, encoded.visual
    rows, weights, text_weight, look_weight = [], [], 0.0, 0.0
    if variant.feedback is not None and (variant.feedback.text or variant.feedback.look):
        strong = strongest(hits, variant.feedback)
        rows, weights = [hit.row for hit in strong], [hit.coverage**2 for hit in strong]
        text_weight, look_weight = variant.feedback.text, variant.feedback.look
    elif variant.pixels is not None:
        rows = [row for row, _ in base[: variant.pixels.top]]
        weights = [1.0] * len(rows)
        text_weight, look_weight = variant.pixels.text, variant.pixels.look
    if not rows:
        return base
    if text_weight:
        vector = unit(vector + text_weight * unit(mean_of(collection.vectors, rows, weights)))
    if look_weight:
        look = unit(mean_of(collection.features, rows, weights))
        direction = (
            VisualHint(unit(direction.direction + look_weight * look), direction.weight)
            if direction is not None
            else VisualHint(look, 0.3)
        )
    again = collection.rank(text, vector, direction)
    if variant.pixels is None or not variant.pixels.pool:
        return again
    pool = {row for row, _ in base[: ranking.RERANK_POOL]}
    return [(row, score) for row, score in again if row in pool] + base[ranking.RERANK_POOL :]


def strongest(hits: list[Match], feedback: Feedback) -> list[Match]:
    """The best `feedback.hits` lexical hits whose file name matched with at least `feedback.coverage`."""
    best = max((hit.bm25 for hit in hits), default=0.0)
    usable = [hit for hit in hits if hit.name_matched and hit.coverage >= feedback.coverage and best > 0]
    usable.sort(key=lambda hit: -(hit.coverage**2) * hit.bm25 / best)
    return usable[: feedback.hits]


def lent_db(
    collection: Collection, stage: Staging, spread: Spread
) -> tuple[sqlite3.Connection, dict[int, Lent]]:
    """An in-memory lexical index of the borrowed words (name: from lenders' names; folder: the rest)."""
    if spread not in stage.borrowed:
        lent = propagate(collection.features, stage.words_of, spread)
        connection = sqlite3.connect(":memory:")
        lexical.create_tables(connection)
        docs = [
            LexicalDoc(row, " ".join(sorted(b.words)), " ".join(sorted(b.other)), "")
            for row, b in lent.items()
        ]
        lexical.insert(connection, docs)
        stage.borrowed[spread] = (connection, lent)
    return stage.borrowed[spread]


def extra_gains(
    collection: Collection, stage: Staging, text: str, variant: Variant, hits: list[Match]
) -> dict[int, float]:
    """Propagated and look-alike gains per row."""
    gains: dict[int, float] = {}
    if variant.spread is not None and variant.spread_weight:
        connection, lent = lent_db(collection, stage, variant.spread)
        key = (variant.spread, text)
        if key not in stage.lent_hits:
            stage.lent_hits[key] = lexical.search(connection, text, DEPTH)
        found = stage.lent_hits[key]
        best = max((hit.score for hit in found), default=0.0)
        for hit in found:
            scaled = max(hit.score / best, 0.0) if best > 0 else 0.0
            gains[hit.row] = (
                variant.spread_weight * lent[hit.row].omega * hit.coverage**variant.spread_power * scaled
            )
    feedback = variant.feedback
    if feedback is not None and feedback.alike:
        strong = strongest(hits, feedback)
        if strong:
            best = max(hit.bm25 for hit in hits)
            weights = [hit.coverage**2 * hit.bm25 / best for hit in strong]
            alike = lookalike_gain(
                collection.features, [h.row for h in strong], weights, feedback.low, feedback.high
            )
            for at in np.flatnonzero(alike > 0).tolist():
                gains[at] = gains.get(at, 0.0) + feedback.alike * float(alike[at])
    return gains


def lexical_gains(hits: list[Match], fusion: Fusion) -> dict[int, float]:
    """Each lexical hit's gain in the fusion: weight × coverage^power × BM25 / best."""
    best = max((hit.bm25 for hit in hits), default=0.0)
    if best <= 0:
        return {}
    return {hit.row: fusion.weight * hit.coverage**fusion.power * max(hit.bm25 / best, 0.0) for hit in hits}


def ranked(collection: Collection, stage: Staging, text: str, variant: Variant) -> list[int]:
    """One query's rows, best first, under a variant."""
    base = collection.vector[text]
    hits = stage.hits[text]
    if variant.name == "semantic":
        return [row for row, _ in base]
    if variant.product:
        app_fusion.MARGIN_LENT = variant.margin_lent
        return product(collection, stage, text, variant)
    vector = expanded(collection, text, base, hits, variant)
    extra = extra_gains(collection, stage, text, variant, hits)
    return [row for row, _ in fuse(vector, hits, extra, variant.fusion)]


def product(collection: Collection, stage: Staging, text: str, variant: Variant) -> list[int]:
    """One query's rows as `SearchService` hybrid ranks them: app/fusion.py over the weak flags of the
    lexical hits and the words the chosen propagation lends (`app.propagation.Lending.parts`)."""
    base, hits = collection.vector[text], stage.hits[text]
    if stage.lending is None:
        stage.lending = Lending(lent_db(collection, stage, CHOSEN)[1])
    borrowed = dict(stage.lending.parts(text))
    named = [0.0 if not hit.name_matched else hit.name_share for hit in hits]  # `LexicalHit.own`
    lexical = [(h.row, h.bm25, h.coverage, weak(h), share) for h, share in zip(hits, named, strict=True)]
    head = base[: variant.fusion.window]
    fused = shipped_fuse_parts(head, lexical, lead=GUARD_LEAD, borrowed=borrowed, margin=variant.margins)
    done = {found.key for found in fused}
    return [found.key for found in fused] + [row for row, _ in base if row not in done]


def scored(
    collection: Collection,
    stages: dict[Naming, Staging],
    variant: Variant,
    texts: list[str],
    generic: list[str],
    split: str,
) -> dict[str, dict[int, float]]:
    """A variant's figures: captions on each staging and subset, generic queries on opaque and mixed names."""
    found: dict[str, dict[int, float]] = {}
    for names, staged in stages.items():
        ranking_of = {
            text: [collection.sources[row] for row in ranked(collection, staged, text, variant)[: max(KS)]]
            for text in texts
        }
        if names == "mixed":
            for subset, chosen in subsets(texts, collection.relevant, staged.named).items():
                found[f"mixed {subset}"] = recall({t: ranking_of[t] for t in chosen}, collection.relevant)
        else:
            found[names] = recall(ranking_of, collection.relevant)
        if names in ("opaque", "mixed"):
            full = {
                text: [collection.sources[row] for row in ranked(collection, staged, text, variant)]
                for text in generic
            }
            found[f"generic {names}"] = half_recall(full, collection.generic, collection.half_of, split)
    return found


WIDTH = 96  # characters of a variant's name in the table
COLUMNS = ("real", "mixed all", "mixed named", "mixed unnamed", "opaque", "generic opaque", "generic mixed")


def print_header() -> None:
    """The table's header: R@1 / R@10 per column (nDCG@10 for the generic ones too)."""
    print("variant".ljust(WIDTH) + " | " + " | ".join(column.ljust(15) for column in COLUMNS))


def print_row(name: str, found: dict[str, dict[int, float]]) -> None:
    """One variant: R@1 / R@10 per column, the generic ones with nDCG@10."""
    cells = []
    for column in COLUMNS:
        value = found[column]
        cell = f"{value[1]:.1f}/{value[10]:.1f}" + (
            f"/{value[0]:.1f}" if column.startswith("generic") else ""
        )
        cells.append(cell.ljust(15))
    print(name[:WIDTH].ljust(WIDTH) + " | " + " | ".join(cells), flush=True)


def spread_variant(
    spread: Spread,
    weight: float = 1.0,
    power: float = 2.0,
    lead: float | None = None,
    strict: bool = False,
    cap: bool = False,
) -> Variant:
    """A build-time propagation variant, with the clear-look guard from `lead` on."""
    name = f"spread w={weight:g} p={power:g}{' capped' if cap else ''} {spread.label()}"
    name += "" if lead is None else f" + guard {lead:g}{' strict' if strict else ''}"
    fusion = Fusion(lead=lead, strict=strict, extra_weight=weight)
    return Variant(name, spread, weight, power, spread_cap=cap, fusion=fusion)


CHOSEN = Spread(coherent=1.5, statistic="lift")  # k=3, ω 0.5→0.75, agree 0.5, unnamed rows only


def margins() -> list[Variant]:
    """The clear-look margin (2026-12-07): app/fusion.py's lead guard 0.7 and propagation, with a weak
    gain kept below the best look for each picture that trails it by a margin, and the bench's forms."""
    found = [Variant("margin: product, none (main)", product=True, margins=None)]
    for bare in (0.05, 0.1, 0.125, 0.15, 0.2):
        for names in (0.2, 0.3, 2.0):  # 2: partial names never guarded
            for lent in (False, True):
                name = f"margin: product, folders {bare:g}{' + lent' if lent else ''}, names in part "
                name += "never" if names > 1 else f"{names:g}"
                found.append(Variant(name, product=True, margins=(bare, names), margin_lent=lent))
    chosen = spread_variant(CHOSEN, 2.0, 1.0, lead=GUARD_LEAD)
    found.append(dataclasses.replace(chosen, name=f"margin: bench {chosen.name}"))
    forms: list[tuple[str, dict[str, float | bool]]] = []
    for m in (0.1, 0.2, 0.3):  # every weak gain, relative to the window's range
        forms += [(f"relative {m:g}", {"margin": m})]
        forms += [(f"relative {m:g} folders{a}", {"margin": m, "folders": True} | o) for a, o in SUFFIXES]
    for m in (0.05, 0.1, 0.125, 0.15, 0.2):  # in cosine
        forms += [(f"absolute {m:g}", {"margin": m, "absolute": True})]
        forms += [
            (f"absolute {m:g} folders{a}", {"margin": m, "absolute": True, "folders": True} | o)
            for a, o in SUFFIXES
        ]
    forms += [(f"relative 0.2 clear {c:g}", {"margin": 0.2, "clear": c}) for c in (0.05, 0.1)]
    forms += [("absolute 0.125, not lent", {"margin": 0.125, "absolute": True, "lent": False})]
    forms += [("absolute 0.125, bare top", {"margin": 0.125, "absolute": True, "bare": True})]
    folders: dict[str, float | bool] = {"margin": 0.1, "absolute": True, "folders": True, "bare": True}
    for m in (0.2, 0.25, 0.3, 0.35, 0.4):  # partial names too, with their own margin
        for strict in (False, True):
            label = f"absolute 0.1 folders, bare top, names {m:g}{' strict' if strict else ''}"
            forms += [(label, folders | {"name_margin": m, "strict": strict})]
    for m in (0.1, 0.15, 0.2, 0.3, 0.4):  # names the query covers only in part
        label = f"absolute 0.1 folders, bare top, name side {m:g}"
        forms += [(label, folders | {"name_margin": m, "name_side": True})]
    for label, options in forms:
        fusion = dataclasses.replace(chosen.fusion, **options)  # type: ignore[arg-type]
        found.append(dataclasses.replace(chosen, name=f"margin: bench {label}", fusion=fusion))
    return found


SUFFIXES: tuple[tuple[str, dict[str, float | bool]], ...] = (
    ("", {}),
    (", not lent", {"lent": False}),
    (", bare top", {"bare": True}),
    (", not lent, bare top", {"lent": False, "bare": True}),
)


def combinations() -> list[Variant]:
    """The chosen propagation with the clear-look guard at other leads, and with pixel feedback."""
    found = []
    for lead in (0.6, 0.7):
        found.append(spread_variant(CHOSEN, 2.0, 1.0, lead=lead, strict=True))
    base = spread_variant(CHOSEN, 2.0, 1.0, lead=0.5, strict=True)
    for top, beta, pool in (
        (10, 0.1, False),
        (10, 0.1, True),
        (20, 0.1, False),
        (10, 0.05, False),
        (10, 0.15, False),
    ):
        pixels = Pixels(top, text=beta, pool=pool)
        label = f"β={beta:g} top={top}{' pool' if pool else ''}"
        found.append(Variant(f"pixels text {label}", pixels=pixels))
        found.append(dataclasses.replace(base, name=f"combo: pixels {label} + {base.name}", pixels=pixels))
    return found


def variants() -> list[Variant]:
    """Every variant compared: the baselines, then each lever alone, then combinations."""
    found = [
        Variant("semantic"),
        Variant("shipped", product=True),
        Variant("fusion: bench copy of shipped (before propagation and guard)"),
    ]
    found += margins()
    for lead in (0.3, 0.5, 0.7):
        for strict in (False, True):
            name = f"guard: lead {lead:g}{' strict' if strict else ''}"
            found.append(Variant(name, fusion=Fusion(lead=lead, strict=strict)))
    for weight in (1.0, 1.5, 2.0, 3.0):
        for power in (1.0, 2.0):
            found.append(spread_variant(Spread(coherent=None), weight, power))
    for k in (1, 3, 5):
        for low, high in ((0.45, 0.7), (0.5, 0.75), (0.55, 0.8), (0.4, 0.8)):
            found.append(spread_variant(Spread(k=k, low=low, high=high, coherent=None), 2.0, 1.0))
    for agree in (0.3, 0.7):
        found.append(spread_variant(Spread(agree=agree, coherent=None), 2.0, 1.0))
    for coherent, statistic in GATES:
        found.append(spread_variant(Spread(coherent=coherent, statistic=statistic), 2.0, 1.0))
    found.append(spread_variant(Spread(everyone=True, coherent=None), 2.0, 1.0))
    for lead in (0.3, 0.5):
        for strict in (False, True):
            spread = Spread(coherent=1.5, statistic="lift")
            found.append(spread_variant(spread, 2.0, 1.0, lead=lead, strict=strict))
    for weight in (2.0, 3.0, 4.0):
        for guard in (None, 0.5):
            spread = Spread(coherent=1.5, statistic="lift")
            found.append(spread_variant(spread, weight, 1.0, lead=guard, strict=True, cap=True))
    found += combinations()
    for hits in (1, 3):
        for beta in (0.25, 0.5):
            found.append(
                Variant(f"feedback text β={beta:g} hits={hits}", feedback=Feedback(hits=hits, text=beta))
            )
        for gamma in (0.5, 1.0):
            found.append(
                Variant(f"feedback look γ={gamma:g} hits={hits}", feedback=Feedback(hits=hits, look=gamma))
            )
        for alike in (0.5, 1.0):
            feedback = Feedback(hits=hits, alike=alike)
            found.append(
                Variant(
                    f"feedback alike {alike:g} ω 0.5→0.75 hits={hits}",
                    feedback=feedback,
                    fusion=Fusion(extra_weight=alike),
                )
            )
    for top in (3, 5, 10):
        for beta in (0.1, 0.25, 0.5):
            found.append(Variant(f"pixels text β={beta:g} top={top}", pixels=Pixels(top, text=beta)))
        for gamma in (0.5, 1.0):
            found.append(Variant(f"pixels look γ={gamma:g} top={top}", pixels=Pixels(top, look=gamma)))
    return found


def collection_of(
    args: argparse.Namespace, work: Path, settings: Settings, texts: list[str], generic: list[str]
) -> Collection:
    """Build (or reuse) the index of the stamps under their real names, encode and rank every query."""
    stamps, selected, _ = captions(args.cache_dir, args.split)
    models = prepare(settings, "packaged", with_lm=False)
    index_dir, relevant = stamps_index(work, stamps, selected, models, settings)
    index = Index(index_dir)
    service = service_over(index, models, settings.cache_dir)
    sources = [record.source for record in index.records(list(range(index.count)))]
    stamp_of = {stamp.path: stamp for stamp in selected}
    collection = Collection(
        index,
        service.pipeline,
        sources,
        np.asarray(index.features, dtype=np.float32),
        np.asarray(index.vectors, dtype=np.float32),
        stamp_of,
        relevant,
        generic_relevance(stamps, selected, sources),
        {source: split_of(stamp_of[source].caption) for source in sources},
    )
    for text in texts + generic:
        collection.encoded[text] = encoded = service.pipeline.encode_query(text)
        collection.vector[text] = collection.rank(text, encoded.vector, encoded.visual)
    return collection


def main(argv: Sequence[str] | None = None) -> int:
    """Build once, rank every query once per staging, print one line per variant."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    _, selected, texts = captions(args.cache_dir, args.split)
    generic = sorted(set(generic_queries(selected).values()))
    with tempfile.TemporaryDirectory(prefix="propagate-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        collection = collection_of(args, work, Settings(), texts, generic)
        try:
            stages = {names: staging(collection, names, texts + generic) for names in STAGINGS}
            log.info("prepared in %.0f s", time.perf_counter() - started)
            noise_check(collection, stages["mixed"])
            oracle(collection, stages["mixed"], texts)
            print(
                f"split {args.split}: {len(texts)} captions, {len(generic)} generic queries; "
                "R@1/R@10 (generic: /nDCG@10)"
            )
            print_header()
            for variant in variants():
                if args.only and not any(variant.name.startswith(prefix) for prefix in args.only):
                    continue
                print_row(variant.name, scored(collection, stages, variant, texts, generic, args.split))
        finally:
            collection.index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
