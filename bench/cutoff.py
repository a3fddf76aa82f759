"""The relevance cutoff of a date sort (`min_score`), swept over the 0–1 score on the stamps' dev sets.

Run by `bench.relevance --cutoffs` over its staged index: each generic class-word query is ranked over
the whole index through `SearchService.search`, and the pictures of one half scoring ≥ a cut are what
a date sort would keep; precision, recall and F1 of them (a picture is relevant when its category
folder is the query's), averaged over the queries, and the share of caption queries whose picture
is kept. The default `DATE_SORT_MIN_SCORE` (app/options.py) is the cut with the best mean F1.

    .venv/bin/python -m bench.relevance --names mixed --split tune --short --no-fp32 --cutoffs
"""

from __future__ import annotations

from app.assembly import service_over
from app.index import Index
from app.options import Mode
from app.query import CompoundQuery, Part
from app.service import SearchRequest
from bench.relevance import Staged, generic_queries, relevant_captions, relevant_generic
from scripts.tuxpaint import split_of


def scored_ranking(run: Staged, queries: list[str], mode: Mode) -> dict[str, list[tuple[str, float]]]:
    """Every query ranked through `SearchService.search` over the whole index: (source, score) best first."""
    index = Index(run.index_dir)
    try:
        service = service_over(index, run.models, run.cache_dir)

        def ranked(query: str) -> list[tuple[str, float]]:
            request = SearchRequest(CompoundQuery(positive=(Part(query),)), mode=mode, top_k=index.count)
            return [(hit.record.source, hit.score) for hit in service.search(request).hits]

        return {query: ranked(query) for query in queries}
    finally:
        index.close()


def kept_at(
    scored: dict[str, list[tuple[str, float]]], relevant: dict[str, set[str]], floor: float
) -> tuple[float, float, float, float]:
    """Mean precision, recall and F1 of the results scoring ≥ floor, and the mean number kept, per query."""
    precision = recall_sum = f1 = kept_sum = 0.0
    for query, ranked in scored.items():
        kept = [source for source, score in ranked if score >= floor]
        wanted = {source for source, captions in relevant.items() if query in captions}
        right = sum(source in wanted for source in kept)
        p, r = (right / len(kept) if kept else 0.0), (right / len(wanted) if wanted else 0.0)
        precision, recall_sum = precision + p, recall_sum + r
        f1 += 2 * p * r / (p + r) if p + r else 0.0
        kept_sum += len(kept)
    n = max(len(scored), 1)
    return precision / n, recall_sum / n, f1 / n, kept_sum / n


CUTOFFS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def cutoff_rows(run: Staged, split: str, captions: list[str]) -> dict[str, float | str]:
    """Sweep min_score: generic queries (precision / recall / F1 of what a cut keeps) and captions
    (the share whose picture is kept), semantic and hybrid, on one half's pictures; the best F1's cut."""
    folders = generic_queries(run.originals)
    generic = sorted(set(folders.values()))
    relevant = relevant_generic(run.originals, run.staged, run.report, folders)
    half_of = {stamp.path: split_of(stamp.caption) for stamp in run.staged}
    in_half = {source: wanted for source, wanted in relevant.items() if split in ("all", half_of[source])}
    caption_relevant = relevant_captions(run.staged, run.report)
    result: dict[str, float | str] = {}
    for mode in ("semantic", "hybrid"):
        scored = {
            query: [(source, score) for source, score in ranked if source in in_half]
            for query, ranked in scored_ranking(run, generic, mode).items()
        }
        by_caption = scored_ranking(run, captions, mode)
        print(f"cutoff sweep, {mode}: generic ({len(generic)} queries) P / R / F1 / kept; captions kept")
        best = (0.0, -1.0)
        for floor in CUTOFFS:
            p, r, f1, kept = kept_at(scored, in_half, floor)
            found = kept_at(by_caption, caption_relevant, floor)
            print(f"  min_score {floor:.2f}: {100 * p:5.1f} / {100 * r:5.1f} / {100 * f1:5.1f} / {kept:6.1f};"
                  f" captions {100 * found[1]:5.1f} % kept, {found[3]:6.1f} results")  # fmt: skip
            best = max(best, (f1, floor), key=lambda pair: pair[0])
        result[f"cutoff_{mode}_best_f1"] = 100 * best[0]
        result[f"cutoff_{mode}_best"] = f"{best[1]:.2f}"
    return result
