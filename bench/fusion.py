"""Hybrid fusion variants on the Tux Paint stamps: one index, one vector and lexical ranking per query.

The images are encoded once (an index built under their real names); each staging of
bench/relevance.py (`opaque`, `real`, `mixed`) gets its own in-memory lexical index of the names
and folders it would have given the rows, and every fusion variant is computed from the same vector
ranking (the service's: visual re-rank included) and lexical hits (BM25, coverage) in Python.
Choose on `--split tune` only.

    nice -n 19 .venv/bin/python -m bench.fusion --split tune
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app import lexical, ranking
from app.assembly import service_over
from app.bridge import BridgeParams
from app.catalog import Catalog
from app.fusion import fuse
from app.index import Index
from app.lexical import LexicalDoc
from app.pca import DEFAULT_DIM
from app.pipeline import Models, Pipeline
from app.registry import make_bridge, prepare
from app.service import FUSION_WINDOW
from app.settings import Settings
from bench import relevance
from bench.relevance import KS, Naming, Row, build, print_table, recall, relevant_captions, staged_name
from scripts.tuxpaint import BENCH_CACHE, Stamp, collect, fetch_stamps, split_of, stage

log = logging.getLogger("bench.fusion")

WINDOWS = (100, 200, 400)
DEPTH = 200  # lexical hits per query (the service's LEXICAL_DEPTH)
STAGINGS: tuple[Naming, ...] = ("opaque", "real", "mixed")


@dataclass(frozen=True)
class Query:
    """One query's vector ranking (row, cosine; the deepest window) and lexical hits.

    A lexical hit: (row, BM25, share of the query's content words it matches, share of its file
    name's letters the query matches): `app.lexical.coverages`.
    """

    vector: list[tuple[int, float]]
    lexical: list[tuple[int, float, float, float]]


def share(hit: tuple[int, float, float, float], cover: str) -> float:
    """A hit's coverage: of the query's words, of its name's words, or the larger of the two."""
    return {"query": hit[2], "name": hit[3], "max": max(hit[2], hit[3])}[cover]


Fuse = Callable[[Query], list[int]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--split", choices=["report", "tune", "all"], default="tune")
    parser.add_argument("--work", type=Path, default=None, help="keep the index here between runs")
    return parser.parse_args(argv)


def lexical_db(index: Index, stamp_of: dict[str, Stamp], names: Naming) -> sqlite3.Connection:
    """An in-memory lexical index of the rows as `names` would have staged their files."""
    connection = sqlite3.connect(":memory:")
    lexical.create_tables(connection)
    records = index.records(list(range(index.count)))
    catalog = Catalog(index)
    stored = catalog.metadata([record.row for record in records])
    catalog.close()
    docs = []
    for record in records:
        path = PurePosixPath(staged_name(stamp_of[record.source], names))
        folder = "" if str(path.parent) == "." else path.parent.as_posix()
        docs.append(LexicalDoc(record.row, path.name, folder, stored[record.row].text))
    lexical.insert(connection, docs)
    return connection


def rrf(k: int, window: int, power: float = 0.0, cover: str = "query") -> Fuse:
    """Reciprocal rank fusion of the vector window and the lexical ranking, lexical terms × coverage^power."""

    def fused(query: Query) -> list[int]:
        head = [row for row, _ in query.vector[:window]]
        scores = {row: 1.0 / (k + rank) for rank, row in enumerate(head, start=1)}
        for rank, hit in enumerate(query.lexical, start=1):
            scores[hit[0]] = scores.get(hit[0], 0.0) + share(hit, cover) ** power / (k + rank)
        first = {row: i for i, row in enumerate(dict.fromkeys(head + [hit[0] for hit in query.lexical]))}
        return sorted(scores, key=lambda row: (-scores[row], first[row]))

    return fused


def shipped(query: Query) -> list[int]:
    """The service's fusion (`app.fusion.fuse` over the best FUSION_WINDOW), as hybrid mode ranks."""
    lexical = [
        (row, score, max(query_share, name_share)) for row, score, query_share, name_share in query.lexical
    ]
    return [row for row, _ in fuse(query.vector[:FUSION_WINDOW], lexical)]


def summed(
    weight: float, window: int, power: float = 0.0, scale: str = "min-max", cover: str = "query"
) -> Fuse:
    """Weighted sum: cosines min-max scaled in the window + weight × coverage^power × scaled BM25.

    `scale`: BM25 min-max scaled within the lexical list (app.fusion.weighted_sum; the weakest hit
    counts 0) or divided by the best one ("max").
    """

    def fused(query: Query) -> list[int]:
        if not query.lexical:
            return [row for row, _ in query.vector]
        values = [hit[1] for hit in query.lexical]
        low = min(values) if scale == "min-max" else 0.0
        span = max(values) - low
        lexical = [
            (hit[0], share(hit, cover) ** power * ((hit[1] - low) / span if span > 0 else 1.0))
            for hit in query.lexical
        ]
        lexical.sort(key=lambda pair: -pair[1])
        vector = query.vector[:window]
        cosines = [score for _, score in vector]
        floor, width = min(cosines), max(cosines) - min(cosines)
        scores = {row: (score - floor) / width if width > 0 else 1.0 for row, score in vector}
        for row, value in lexical:
            scores[row] = scores.get(row, 0.0) + weight * value
        first = {
            row: i for i, row in enumerate(dict.fromkeys([r for r, _ in vector] + [r for r, _ in lexical]))
        }
        return sorted(scores, key=lambda row: (-scores[row], first[row]))

    return fused


def variants() -> dict[str, Fuse]:
    """Every fusion compared, by name."""
    found: dict[str, Fuse] = {"semantic": lambda query: [row for row, _ in query.vector]}
    for window in WINDOWS:
        for k in (10, 60):
            found[f"RRF k={k} window={window}"] = rrf(k, window)
    for weight in (0.5, 1.0, 2.0, 4.0):
        found[f"sum min-max w={weight:g} window=200"] = summed(weight, 200)
    for window in WINDOWS:
        for weight in (0.5, 1.0, 2.0, 4.0):
            found[f"sum max w={weight:g} window={window}"] = summed(weight, window, scale="max")
    for cover in ("query", "name", "max"):
        for power in (1.0, 2.0, 4.0):
            for k in (10, 60):
                found[f"RRF k={k} window=400 {cover}-coverage^{power:g}"] = rrf(k, 400, power, cover)
            for weight in (1.0, 2.0, 4.0):
                name = f"sum max w={weight:g} window=200 {cover}-coverage^{power:g}"
                found[name] = summed(weight, 200, power, "max", cover)
    found["shipped: app.fusion.fuse"] = shipped
    return found


def queries_of(index: Index, pipeline: Pipeline, texts: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Each query's vector ranking, the deepest window long, as the service ranks it."""
    deepest = max(WINDOWS)
    found = {}
    for text in texts:
        encoded = pipeline.encode_query(text)
        found[text] = ranking.candidates(index, encoded.vector, visual=encoded.visual).head(deepest)
    return found


def lexical_of(
    connection: sqlite3.Connection, texts: list[str]
) -> dict[str, list[tuple[int, float, float, float]]]:
    """Each query's lexical hits with their coverage."""
    found = {}
    for text in texts:
        hits = lexical.search(connection, text, DEPTH)
        shares = lexical.coverages(connection, text, [hit.row for hit in hits])
        found[text] = [(hit.row, hit.score, *shares[hit.row]) for hit in hits]
    return found


def subsets(
    texts: list[str], relevant: dict[str, set[str]], stamp_of: dict[str, Stamp], names: Naming
) -> dict[str, list[str]]:
    """All queries; in the mixed staging also those whose relevant images keep a name (named) and the rest."""
    if names != "mixed":
        return {"all": texts}
    named = {source for source in relevant if staged_name(stamp_of[source], names) == source}
    return relevance.subsets(texts, relevant, named)


def table(queries: dict[str, Query], sources: list[str], relevant: dict[str, set[str]]) -> list[Row]:
    """One row per fusion variant: its recall over the queries."""
    rows = []
    for name, method in variants().items():
        ranked = {text: [sources[row] for row in method(query)[: max(KS)]] for text, query in queries.items()}
        rows.append(Row(name, "-", recall(ranked, relevant)))
    return rows


def captions(cache_dir: Path, split: str) -> tuple[Path, list[Stamp], list[str]]:
    """The unpacked stamps folder, every captioned stamp, and the distinct captions of a half."""
    stamps = fetch_stamps(cache_dir.expanduser())
    selected = collect(stamps, None)
    return stamps, selected, sorted({s.caption for s in selected if split in ("all", split_of(s.caption))})


def stamps_index(
    work: Path, stamps: Path, selected: list[Stamp], models: Models, settings: Settings
) -> tuple[Path, dict[str, set[str]]]:
    """The index of the stamps under their real names in `work` (built on first use), and each source's
    relevant captions."""
    folder, index_dir = work / "images", work / "index"
    if not index_dir.exists():
        pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
        stage(stamps, selected, folder)
        report = build(folder, index_dir, pipeline, DEFAULT_DIM, settings)
        found = relevant_captions(selected, report)
        (work / "relevant.json").write_text(json.dumps({key: sorted(value) for key, value in found.items()}))
    stored = json.loads((work / "relevant.json").read_text())
    return index_dir, {source: set(captions) for source, captions in stored.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Build once, rank every query once per staging, print one table per staging."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = Settings()
    stamps, selected, texts = captions(args.cache_dir, args.split)
    models = prepare(settings, "packaged", with_lm=False)
    with tempfile.TemporaryDirectory(prefix="fusion-") as scratch:
        index_dir, relevant = stamps_index(args.work or Path(scratch), stamps, selected, models, settings)
        index = Index(index_dir)
        try:
            service = service_over(index, models, settings.cache_dir)
            vectors = queries_of(index, service.pipeline, texts)
            sources = [record.source for record in index.records(list(range(index.count)))]
            stamp_of = {stamp.path: stamp for stamp in selected}
            for names in STAGINGS:
                lexicals = lexical_of(lexical_db(index, stamp_of, names), texts)
                with_hits = sum(bool(hits) for hits in lexicals.values())
                print(f"\nstaging {names}, {args.split}: {len(texts)} queries, {with_hits} with lexical hits")
                queries = {text: Query(vectors[text], lexicals[text]) for text in texts}
                for subset, chosen in subsets(texts, relevant, stamp_of, names).items():
                    print(f"{subset}: {len(chosen)} queries")
                    print_table(table({text: queries[text] for text in chosen}, sources, relevant))
        finally:
            index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
