"""Near-duplicate collapse of ranked results: one result per group of visually near-identical images.

Two indexed images are near-duplicates when the cosine of their unit visual features
(`features.npy`: the image model's pooled features, flip-averaged) reaches the threshold
(`IMGSEARCH_DEDUP_THRESHOLD`, default `DEFAULT_THRESHOLD`; 0 turns collapsing off).
Ranked candidates are walked best first: each one joins the most similar representative kept so
far when that cosine reaches the threshold, and otherwise becomes a representative itself.
Paging counts groups, so `offset` and `top_k` mean the same with and without collapsing; a
result's `duplicates` counts the copies found among the candidates fetched for its page. The
greedy walk costs candidates² × dimensions, so only the best `MAX_WINDOW` candidates are folded:
deeper results (past about 4,000 images into one ranking) come unfolded.

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.vectors import read_rows

if TYPE_CHECKING:  # settings import this module for its default: keep it free of the index's imports
    from app.index import Index
    from app.references import VisualHint

DEFAULT_THRESHOLD = 0.97
MIN_WINDOW = 64
MAX_WINDOW = 4096  # candidates collapsed per request: ≈0.3 s of one CPU core at 1280 dimensions
BLOCK = 256


@dataclass(frozen=True)
class Group:
    """A representative row with its score and how many near-duplicates were folded into it."""

    row: int
    score: float
    duplicates: int = 0


def collapse(ranked: list[tuple[int, float]], features: np.ndarray, threshold: float) -> list[Group]:
    """Fold ranked (row, score) pairs into groups, best first; `features` are the index's unit rows."""
    if not ranked:
        return []
    rows = np.fromiter((row for row, _ in ranked), dtype=np.int64, count=len(ranked))
    candidates = read_rows(features, rows)
    reps = np.empty_like(candidates)  # representatives' features, in the order they were kept
    kept: list[int] = []  # their positions in `ranked`
    counts: list[int] = []
    # Blocks of candidates meet the earlier representatives in one matrix product (fast), and
    # each other through their small Gram matrix.
    for first in range(0, len(rows), BLOCK):
        block = candidates[first : first + BLOCK]
        before = len(kept)
        if before:
            earlier = block @ reps[:before].T
            earlier_best = earlier.argmax(axis=1)
            earlier_value = earlier[np.arange(len(block)), earlier_best]
        else:
            earlier_best = np.full(len(block), -1)
            earlier_value = np.full(len(block), -np.inf, dtype=np.float32)
        gram = block @ block.T
        fresh = np.zeros(len(block), dtype=bool)  # block positions kept as representatives
        fresh_ranks = np.full(len(block), -1)  # their index among all representatives
        for i in range(len(block)):
            best, similarity = int(earlier_best[i]), float(earlier_value[i])
            if fresh[:i].any():
                inner = np.where(fresh[:i], gram[i, :i], -np.inf)
                j = int(np.argmax(inner))
                if inner[j] > similarity:
                    best, similarity = int(fresh_ranks[j]), float(inner[j])
            if similarity >= threshold:
                counts[best] += 1
            else:
                fresh[i], fresh_ranks[i] = True, len(kept)
                reps[len(kept)] = block[i]
                kept.append(first + i)
                counts.append(0)
    return [
        Group(int(rows[position]), ranked[position][1], count)
        for position, count in zip(kept, counts, strict=True)
    ]


def search(
    index: Index,
    query: np.ndarray,
    top_k: int,
    offset: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    space: str = "vectors",
    visual: VisualHint | None = None,
) -> list[Group]:
    """Groups offset..offset+top_k of an exact search, over-fetching candidates until the page is full."""
    if threshold <= 0:
        return [Group(row, score) for row, score in index.search(query, top_k, offset, space, visual)]
    wanted = offset + top_k
    window = min(index.count, max(2 * wanted + 16, MIN_WINDOW), MAX_WINDOW)
    while True:
        groups = collapse(index.search(query, window, 0, space, visual), index.features, threshold)
        # One group past the page, so the last result on it has its own near-copies counted.
        if len(groups) > wanted or window >= index.count:
            return groups[offset:wanted]
        if window >= MAX_WINDOW:
            break
        window = min(index.count, 2 * window, MAX_WINDOW)
    # Collapsing costs window² × dimensions: past MAX_WINDOW candidates, results come unfolded.
    rest = index.search(query, wanted - len(groups), window, space, visual)
    return (groups + [Group(row, score) for row, score in rest])[offset:wanted]
