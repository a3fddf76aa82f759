"""Which neighbour feature finds the named pictures that can lend an unnamed picture its caption's words?

Issue 25: on the Tux Paint stamps under mixed names, an unnamed picture borrows the words of its
nearest named pictures (app/propagation.py, by the stored image features). This bench asks, for each
candidate neighbour feature, how often one of an unnamed relevant picture's k nearest *named*
pictures (k = 1, 3, 10) carries a lendable word that matches a content word of the picture's caption
(as `app.propagation.Lending.matching` matches: a prefix from 4 letters on, else the word or its
plural), and the oracle unnamed R@1 / R@10 of bench/propagate_checks.py (each relevant unnamed
picture gets, in full, the lexical gain of its best-matching named neighbour among its k nearest) with
that feature. Features: the index's image features (`features.npy`, what propagation uses today), its
text-space vectors (`vectors.npy`), grey thumbnails of the drawing (alpha composited on white,
cropped to what the alpha covers, padded square; each image's mean removed: colour-invariant shape),
a colour histogram, a HOG descriptor (scikit-image), and sums / maxima of z-scored cosines.

Tune half only (the unnamed tune captions of `bench.relevance --names mixed`); nothing under app/
changes. The index of the stamps under their real names is cached in `--work`:

    nice -n 5 python -m bench.lenders --work /tmp/lenders/work
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from app import lexical
from app.settings import Settings
from bench.fusion import captions
from bench.propagate import Collection, Staging, collection_of, staging
from bench.propagation import Fusion, fuse
from bench.relevance import KS, recall, subsets
from scripts.tuxpaint import BENCH_CACHE

log = logging.getLogger("bench.lenders")

NEAREST = (1, 3, 10)
PLAIN = (
    "features (today)",
    "text-space vectors",
    "grey 32",
    "grey 16",
    "colour",
    "hog",
)  # not combined  # named neighbours consulted
FLOOR_QUANTILE = 0.99  # a feature's "unrelated" cosine: this quantile of all pairs (features: ≈ 0.5)
Similarity = np.ndarray  # rows × rows cosine (or z-scored cosine) matrix


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lenders/work"), help="the cached index")
    parser.add_argument(
        "--misses", action="store_true", help="also list each matching picture's rank under every feature"
    )
    return parser.parse_args(argv)


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    matrix = np.asarray(matrix, dtype=np.float32)
    scaled: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True).clip(min=1e-12)
    return scaled


def centred(matrix: np.ndarray) -> np.ndarray:
    """Unit rows after removing the collection's mean row."""
    matrix = np.asarray(matrix, dtype=np.float32)
    return unit(matrix - matrix.mean(axis=0, keepdims=True))


def drawing(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A stamp as RGB on white and its alpha, cropped to what the alpha covers and padded square (0–1)."""
    image = Image.open(path).convert("RGBA")
    box = image.getchannel("A").getbbox() or (0, 0, image.width, image.height)
    image = image.crop(box)
    side = max(image.width, image.height)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    pixels = np.asarray(square, dtype=np.float32) / 255.0
    alpha = pixels[..., 3:]
    return pixels[..., :3] * alpha + (1.0 - alpha), alpha[..., 0]


def grey_thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """A size × size grey thumbnail with its own mean removed (cosine = Pearson correlation)."""
    grey = Image.fromarray((rgb.mean(axis=2) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    flat = np.asarray(grey, dtype=np.float32).ravel()
    centred_flat: np.ndarray = flat - flat.mean()
    return centred_flat


def colour_histogram(rgb: np.ndarray, alpha: np.ndarray, bins: int = 4) -> np.ndarray:
    """The alpha-weighted RGB histogram of the drawing (bins³), square-rooted (Hellinger)."""
    index = np.minimum((rgb * bins).astype(np.int64), bins - 1)
    flat = (index[..., 0] * bins + index[..., 1]) * bins + index[..., 2]
    counts = np.bincount(flat.ravel(), weights=alpha.ravel(), minlength=bins**3)
    found: np.ndarray = np.sqrt(counts / max(counts.sum(), 1e-9))
    return found


def hog_of(rgb: np.ndarray, size: int = 64) -> np.ndarray:
    """A HOG descriptor of the grey drawing at size × size (9 orientations, 8-pixel cells, 2×2 blocks)."""
    from skimage.feature import hog

    grey = Image.fromarray((rgb.mean(axis=2) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    found: np.ndarray = hog(
        np.asarray(grey, dtype=np.float32) / 255.0,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
    )
    return found


def pixel_features(stamps: Path, sources: list[str]) -> dict[str, np.ndarray]:
    """Thumbnails, colour histogram and HOG of every indexed stamp, rows in index order."""
    found: dict[str, list[np.ndarray]] = {"grey 32": [], "grey 16": [], "colour": [], "hog": []}
    for source in sources:
        rgb, alpha = drawing(stamps / source)
        found["grey 32"].append(grey_thumbnail(rgb, 32))
        found["grey 16"].append(grey_thumbnail(rgb, 16))
        found["colour"].append(colour_histogram(rgb, alpha))
        found["hog"].append(hog_of(rgb))
    return {
        "grey 32": unit(np.stack(found["grey 32"])),
        "grey 16": unit(np.stack(found["grey 16"])),
        "colour": centred(np.stack(found["colour"])),
        "hog": centred(np.stack(found["hog"])),
    }


def zscored(similar: Similarity) -> Similarity:
    """Cosines as z-scores over the collection's pairs (so that features of different spread combine)."""
    off = similar[~np.eye(len(similar), dtype=bool)]
    found: Similarity = (similar - off.mean()) / max(float(off.std()), 1e-9)
    return found


def similarities(collection: Collection, stamps: Path) -> dict[str, Similarity]:
    """Every candidate neighbour feature's rows × rows similarity."""
    plain = {
        "features (today)": unit(collection.features),
        "text-space vectors": unit(collection.vectors),
    } | pixel_features(stamps, collection.sources)
    found = {name: matrix @ matrix.T for name, matrix in plain.items()}
    z = {name: zscored(similar) for name, similar in found.items()}
    today = z["features (today)"]
    for other in ("text-space vectors", "grey 32", "colour", "hog"):
        found[f"z sum: features + {other}"] = today + z[other]
        found[f"z max: features, {other}"] = np.maximum(today, z[other])
    found["z sum: features + grey 32 + colour"] = today + z["grey 32"] + z["colour"]
    found["z sum: features + hog + colour"] = today + z["hog"] + z["colour"]
    return found


def matcher(words: set[str]) -> Callable[[str], bool]:
    """Whether a query word matches one of `words` as the lexical tables match (prefix from 4 letters)."""
    ordered = sorted(words)

    def matches(term: str) -> bool:
        if len(term) < lexical.PREFIX_MIN or term.isdigit():
            return term in words or f"{term}s" in words
        return any(word.startswith(term) for word in ordered)

    return matches


def lender_rows(stage: Staging) -> np.ndarray:
    """The rows with lendable words of their own under the staging (the named pictures)."""
    return np.asarray([row for row, (names, rest) in enumerate(stage.words_of) if names or rest])


def targets(collection: Collection, stage: Staging, texts: list[str]) -> list[tuple[str, int]]:
    """(unnamed caption, one of its relevant rows) for every unnamed tune caption."""
    unnamed = subsets(texts, collection.relevant, stage.named)["unnamed"]
    row_of = {source: row for row, source in enumerate(collection.sources)}
    return [
        (text, row_of[source])
        for text in unnamed
        for source, wanted in collection.relevant.items()
        if text in wanted
    ]


def sharing(
    stage: Staging, pairs: list[tuple[str, int]], lenders: np.ndarray
) -> dict[tuple[str, int], set[int]]:
    """For each (caption, row): the lenders carrying a word that matches a content word of the caption."""
    matches = [matcher(names | rest) for names, rest in (stage.words_of[int(j)] for j in lenders)]
    found = {}
    for text, row in pairs:
        terms = lexical.content_terms(text)
        found[(text, row)] = {
            int(lender) for lender, test in zip(lenders, matches, strict=True) if any(map(test, terms))
        }
    return found


def nearest_named(
    similar: Similarity, lenders: np.ndarray, k: int, floor: float
) -> Callable[[int], list[int]]:
    """A row's k nearest named rows by a similarity, those at or above `floor`."""

    def near(row: int) -> list[int]:
        scores = similar[row, lenders]
        return [int(lenders[i]) for i in np.argsort(-scores, kind="stable")[:k] if scores[i] >= floor]

    return near


def oracle(
    collection: Collection, stage: Staging, pairs: list[tuple[str, int]], near: Callable[[int], list[int]]
) -> dict[int, float]:
    """Unnamed R@k if each relevant unnamed picture got in full the lexical gain of its best-matching named
    neighbour among `near(row)` (bench/propagate_checks.py's ceiling)."""
    ranking = {}
    for text in sorted({text for text, _ in pairs}):
        hits = {hit.row: hit for hit in stage.hits[text]}
        best = max((hit.bm25 for hit in hits.values()), default=0.0)
        extra: dict[int, float] = {}
        for _, row in (pair for pair in pairs if pair[0] == text and best > 0):
            gains = [2.0 * hits[j].coverage ** 2 * hits[j].bm25 / best for j in near(row) if j in hits]
            if gains:
                extra[row] = max(gains)
        rows = [row for row, _ in fuse(collection.vector[text], stage.hits[text], extra, Fusion())]
        ranking[text] = [collection.sources[row] for row in rows[: max(KS)]]
    return recall(ranking, collection.relevant)


def union(nears: list[Callable[[int], list[int]]]) -> Callable[[int], list[int]]:
    """The named rows any of `nears` finds (an oracle that picks the best feature per picture)."""
    return lambda row: sorted({j for near in nears for j in near(row)})


def misses(
    collection: Collection,
    similar: dict[str, Similarity],
    lenders: np.ndarray,
    good: dict[tuple[str, int], set[int]],
) -> None:
    """Per picture with a matching named picture: the rank of the best one under each plain feature."""
    print(
        "caption | unnamed picture | rank of its first matching named picture by each feature | "
        "those pictures, nearest first"
    )
    for (text, row), found in good.items():
        if not found:
            continue
        ranks = []
        for name in PLAIN:
            order = lenders[np.argsort(-similar[name][row, lenders], kind="stable")].tolist()
            ranks.append(f"{name} {min(order.index(j) for j in found) + 1}")
        matching = sorted(found, key=lambda j: -similar[PLAIN[0]][row, j])[:3]
        print(
            f"{text[:48]} | {collection.sources[row]} | {', '.join(ranks)} | "
            + ", ".join(collection.sources[j] for j in matching)
        )


def feature_line(
    collection: Collection,
    stage: Staging,
    pairs: list[tuple[str, int]],
    good: dict[tuple[str, int], set[int]],
    name: str,
    nears: dict[int, Callable[[int], list[int]]],
    floored: tuple[float, Callable[[int], list[int]]] | None,
) -> None:
    """One feature's RESULT line: hits at each k, oracle R@1 / R@10 at 3 (`floored`: from a floor) and 10."""
    cells = []
    for k in NEAREST:
        hit = {(text, row) for text, row in pairs if good[(text, row)] & set(nears[k](row))}
        cells.append(f"hits_k{k}={len(hit)}/{len({text for text, _ in hit})}")
    if floored is not None:
        floor, near = floored
        near3 = oracle(collection, stage, pairs, near)
        cells.append(f"floor={floor:.3f} oracle3_floor_r1={near3[1]:.1f} oracle3_floor_r10={near3[10]:.1f}")
    any3 = oracle(collection, stage, pairs, nears[3])
    any10 = oracle(collection, stage, pairs, nears[10])
    cells.append(f"oracle3_r1={any3[1]:.1f} oracle3_r10={any3[10]:.1f}")
    cells.append(f"oracle10_r1={any10[1]:.1f} oracle10_r10={any10[10]:.1f}")
    print(f"RESULT lenders feature={name.replace(' ', '_')} " + " ".join(cells), flush=True)


def report(collection: Collection, stage: Staging, texts: list[str], stamps: Path, show: bool) -> None:
    """One RESULT line per feature, and one for the union of the plain features (best feature per picture)."""
    pairs = targets(collection, stage, texts)
    lenders = lender_rows(stage)
    good = sharing(stage, pairs, lenders)
    any_pictures = sum(bool(lenders_of) for lenders_of in good.values())
    any_captions = len({text for (text, _), lenders_of in good.items() if lenders_of})
    every = oracle(collection, stage, pairs, lambda row: lenders.tolist())
    print(
        f"{len({text for text, _ in pairs})} unnamed tune captions, {len(pairs)} relevant pictures, "
        f"{len(lenders)} named pictures; a matching named picture exists for {any_pictures} pictures / "
        f"{any_captions} captions (oracle over any named picture: R@1 {every[1]:.1f}, R@10 {every[10]:.1f})"
    )
    similar_of = similarities(collection, stamps)
    for name, similar in similar_of.items():
        floor = float(np.quantile(similar[~np.eye(len(similar), dtype=bool)], FLOOR_QUANTILE))
        nears = {k: nearest_named(similar, lenders, k, -np.inf) for k in NEAREST}
        floored = (floor, nearest_named(similar, lenders, 3, floor))
        feature_line(collection, stage, pairs, good, name, nears, floored)
    nears = {
        k: union([nearest_named(similar_of[name], lenders, k, -np.inf) for name in PLAIN]) for k in NEAREST
    }
    feature_line(collection, stage, pairs, good, "union of the plain features", nears, None)
    if show:
        misses(collection, similar_of, lenders, good)


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the index, rank the tune captions, print one RESULT line per neighbour feature."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    stamps, _, texts = captions(args.cache_dir, "tune")
    args.split = "tune"
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    collection = collection_of(args, args.work, Settings(), texts, [])
    try:
        stage = staging(collection, "mixed", texts)
        log.info("prepared in %.0f s", time.perf_counter() - started)
        semantic = recall(
            {
                text: [collection.sources[row] for row, _ in collection.vector[text][: max(KS)]]
                for text in subsets(texts, collection.relevant, stage.named)["unnamed"]
            },
            collection.relevant,
        )
        print(f"unnamed tune captions, semantic: R@1 {semantic[1]:.1f}, R@10 {semantic[10]:.1f}")
        report(collection, stage, texts, stamps, args.misses)
    finally:
        collection.index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
