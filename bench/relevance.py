"""Text→image relevance on the Tux Paint stamps, staged under opaque names: each caption is a query, R@k.

Beside the captions, a generic-query dev set: the stamps' category folders (`animals/`,
`animals/birds/`, `vehicles/` …) as relevance for class words typed as a person would ("an animal",
"a bird", "a vehicle"; `GENERIC_QUERIES`). A half of it is the ranking restricted to the stamps whose
caption is in that half (the same hashed split as the captions), so the two halves share no picture.
With `--names mixed` the captions are also reported for the *unnamed* subset (every relevant picture
under an opaque name) and the named rest, hybrid beside semantic, all through `SearchService`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, BuildReport, build_index
from app.index import VECTORS, Index
from app.options import Mode
from app.pca import DEFAULT_DIM
from app.pipeline import Models, Pipeline
from app.query import CompoundQuery, Part
from app.registry import make_bridge, packaged_image, prepare
from app.service import SearchRequest
from app.settings import Settings
from app.sources import FolderSource
from scripts.tuxpaint import BENCH_CACHE, PACKAGE, Stamp, collect, fetch_stamps, split_of, stage

log = logging.getLogger("bench.relevance")

KS = (1, 5, 10)
Ranking = dict[str, list[str]]  # query caption → ranked sources (paths relative to the image folder)
Naming = Literal["opaque", "real", "mixed"]
QuerySet = Literal["captions", "generic", "both"]

GENERIC_MIN = 6  # captioned stamps a folder needs, sub-folders included, to become a generic query
STYLE_FOLDERS = frozenset({"cartoon", "toys", "plastic"})  # how a stamp is drawn, not what it shows
GENERIC_QUERIES = {  # content folder → the class words a person would type for it
    "animals": "an animal",
    "animals/birds": "a bird",
    "animals/fish": "a fish",
    "animals/insects": "an insect",
    "animals/mammals": "a mammal",
    "animals/mammals/bovines": "cattle, sheep or goats",
    "animals/mammals/rodents": "a rodent",
    "clothes": "clothing",
    "clothes/hats": "a hat",
    "food": "food",
    "food/fruit": "fruit",
    "food/vegetables": "a vegetable",
    "hobbies": "a hobby",
    "hobbies/music": "a musical instrument",
    "hobbies/music/string": "a string instrument",
    "household": "a household object",
    "household/dishes": "dishes",
    "household/tools": "a tool",
    "military": "military",
    "people": "a person",
    "plants": "a plant",
    "plants/flowers": "a flower",
    "plants/trees": "a tree",
    "seasonal": "a holiday",
    "seasonal/christmas": "christmas",
    "seasonal/easter": "easter",
    "seasonal/halloween": "halloween",
    "seasonal/hanukkah": "hanukkah",
    "seasonal/newyears": "new year",
    "space": "space",
    "space/planets": "a planet",
    "sports": "sports",
    "town": "a town",
    "town/flags": "a flag",
    "town/houses": "a building",
    "town/monuments": "a monument",
    "town/roadsigns": "a road sign",
    "vehicles": "a vehicle",
    "vehicles/locomotive": "a train",
}


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    name: str
    dim: str
    recall: dict[int, float]
    vector_bytes: int | None = None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cache-dir", type=Path, default=BENCH_CACHE, help="where the .deb is kept and unpacked"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (smoke run)")
    parser.add_argument(
        "--pca-dim", type=int, default=DEFAULT_DIM, help="PCA dimension of the default index (0: none)"
    )
    parser.add_argument(
        "--split",
        choices=["report", "tune", "all"],
        default="report",
        help="caption groups to score (fixed hash split; choices are tuned on 'tune', quoted on 'report')",
    )
    parser.add_argument(
        "--names",
        choices=["opaque", "real", "mixed"],
        default="opaque",
        help="stage the images under opaque names (default: Tux Paint's names nearly equal the captions), "
        "under their real names and folders, or mixed: a fixed hashed half named, the rest opaque",
    )
    parser.add_argument(
        "--queries",
        choices=["captions", "generic", "both"],
        default="both",
        help="the caption queries, the generic class-word queries of the category folders, or both",
    )
    parser.add_argument(
        "--text-model",
        default=None,
        help="a local sentence-transformers folder to use as the text encoder (IMGSEARCH_TEXT_MODEL)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="only the default index, with the int8 and the float32 image encoder (no other rows)",
    )
    parser.add_argument(
        "--no-fp32", action="store_true", help="skip the float32 image encoder's index (one build less)"
    )
    parser.add_argument(
        "--cutoffs",
        action="store_true",
        help="also sweep the relevance cutoff (min_score) over the 0–1 score: what a date sort keeps of "
        "each generic query's relevant pictures (precision, recall, F1) and of each caption's picture",
    )
    args = parser.parse_args(argv)
    if args.pca_dim < 0 or (args.limit is not None and args.limit < 1):
        parser.error("--pca-dim must be ≥ 0 and --limit ≥ 1")
    return args


def opaque_name(stamp: Stamp) -> str:
    """A file name that says nothing about the picture: 20 decimal digits of the sha256 of its path."""
    digest = hashlib.sha256(stamp.path.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big'):020d}{PurePosixPath(stamp.path).suffix}"


def keeps_name(stamp: Stamp) -> bool:
    """Whether a stamp keeps its real name and folder in the `mixed` staging: a fixed hashed half."""
    return hashlib.sha256(f"named:{stamp.path}".encode()).digest()[0] % 2 == 0


def staged_name(stamp: Stamp, names: Naming) -> str:
    """The path a stamp is staged at: its own, or an opaque name in the top folder."""
    return stamp.path if names == "real" or (names == "mixed" and keeps_name(stamp)) else opaque_name(stamp)


def stage_images(stamps: Path, selected: list[Stamp], folder: Path, names: Naming) -> list[Stamp]:
    """Copy the stamps into `folder` and return them under the paths they were staged at.

    `opaque`: one flat folder of digit-only names, so that no figure can come from file names or
    folders (the stamps' names nearly equal their captions, which are the queries). `real`: the
    package's own names and folders — the second run to report beside the first, hybrid against
    semantic, once search reads names ([collections]). `mixed`: as real collections mix
    `IMG_1234.jpg` with named files, a fixed hashed half keeps its names and folders and the rest
    sits under opaque names in the top folder, where a partial name match can outrank the right
    unnamed picture.
    """
    if names == "real":
        stage(stamps, selected, folder)
        return selected
    staged = [Stamp(staged_name(stamp, names), stamp.caption) for stamp in selected]
    if len({stamp.path for stamp in staged}) != len(staged):
        raise RuntimeError("two stamps got the same staged name")
    for stamp, renamed in zip(selected, staged, strict=True):
        (folder / renamed.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stamps / stamp.path, folder / renamed.path)
    return staged


def relevant_captions(selected: list[Stamp], report: BuildReport) -> dict[str, set[str]]:
    """Captions relevant to each indexed source: its own plus those of identical files folded into it."""
    caption_of = {stamp.path: stamp.caption for stamp in selected}
    relevant = {stamp.path: {stamp.caption} for stamp in selected}
    for skipped in report.skipped:
        log.warning("build skipped %s: %s", skipped["source"], skipped["reason"])
        relevant.pop(skipped["source"], None)
    for duplicate in report.duplicates:
        relevant[duplicate["same_as"]].add(caption_of[duplicate["source"]])
        relevant.pop(duplicate["source"], None)
    return relevant


def content_folder(path: str) -> str:
    """A stamp's folder without the parts that say how it is drawn (animals/birds/cartoon → animals/birds)."""
    return "/".join(part for part in PurePosixPath(path).parent.parts if part not in STYLE_FOLDERS)


def folders_of(path: str) -> list[str]:
    """A stamp's content folder and every folder above it."""
    parts = [part for part in content_folder(path).split("/") if part]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def generic_queries(stamps: list[Stamp]) -> dict[str, str]:
    """Folder → class words, for every content folder holding ≥ GENERIC_MIN stamps, some in each half."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for stamp in stamps:
        for folder in folders_of(stamp.path):
            counts[folder][split_of(stamp.caption)] += 1
    wanted = sorted(
        folder
        for folder, halves in counts.items()
        if halves.total() >= GENERIC_MIN and halves["tune"] and halves["report"]
    )
    missing = [folder for folder in wanted if folder not in GENERIC_QUERIES]
    if missing:
        raise RuntimeError(f"no generic query for the folders {missing}: add them to GENERIC_QUERIES")
    return {folder: GENERIC_QUERIES[folder] for folder in wanted}


def relevant_generic(
    originals: list[Stamp], staged: list[Stamp], report: BuildReport, queries: dict[str, str]
) -> dict[str, set[str]]:
    """Generic queries relevant to each indexed source: its stamp's folders' and identical files' folders'."""
    relevant = {
        renamed.path: {queries[folder] for folder in folders_of(stamp.path) if folder in queries}
        for stamp, renamed in zip(originals, staged, strict=True)
    }
    for skipped in report.skipped:
        relevant.pop(skipped["source"], None)
    for duplicate in report.duplicates:
        relevant[duplicate["same_as"]] |= relevant.pop(duplicate["source"], set())
    return relevant


def half_recall(
    ranking: Ranking, relevant: dict[str, set[str]], half_of: dict[str, str], split: str
) -> dict[int, float]:
    """`recall` of whole-collection rankings restricted to the pictures of one half (all for 'all')."""
    kept = {source: wanted for source, wanted in relevant.items() if split in ("all", half_of[source])}
    ranked = {
        query: [source for source in sources if source in kept][: max(KS)]
        for query, sources in ranking.items()
        if any(query in wanted for wanted in kept.values())
    }
    return recall(ranked, kept)


def subsets(texts: list[str], relevant: dict[str, set[str]], named: set[str]) -> dict[str, list[str]]:
    """All queries; those with a relevant source among `named` (it keeps its name); and the rest (unnamed)."""
    with_name = {caption for source in named if source in relevant for caption in relevant[source]}
    return {
        "all": texts,
        "named": [text for text in texts if text in with_name],
        "unnamed": [text for text in texts if text not in with_name],
    }


def recall(ranking: Ranking, relevant: dict[str, set[str]]) -> dict[int, float]:
    """Percent of queries with a relevant entry in the top k, for each k; key 0 holds nDCG@10 in percent."""
    hits = dict.fromkeys(KS, 0)
    ndcg = 0.0
    for caption, sources in ranking.items():
        gains = [caption in relevant[source] for source in sources[: max(KS)]]
        first = next((i for i, gain in enumerate(gains) if gain), None)
        for k in KS:
            hits[k] += first is not None and first < k
        group = sum(caption in captions for captions in relevant.values())
        ideal = sum(1 / math.log2(i + 2) for i in range(min(group, max(KS))))
        ndcg += sum(1 / math.log2(i + 2) for i, gain in enumerate(gains) if gain) / ideal
    return {0: 100.0 * ndcg / len(ranking)} | {k: 100.0 * hits[k] / len(ranking) for k in KS}


def random_recall(queries: list[str], relevant: dict[str, set[str]]) -> dict[int, float]:
    """Expected recall of a uniformly random ranking: 1 − C(N−g, k)/C(N, k), averaged over queries."""
    n = len(relevant)
    groups = [sum(query in captions for captions in relevant.values()) for query in queries]
    return {0: math.nan} | {
        k: 100.0
        * sum(1 - math.comb(n - g, min(k, n)) / math.comb(n, min(k, n)) for g in groups)
        / len(groups)
        for k in KS
    }


def service_ranking(
    index_dir: Path,
    models: Models,
    cache_dir: Path,
    queries: list[str],
    mode: Mode = "semantic",
    class_weight: float | None = None,
    depth: int = max(KS),
) -> Ranking:
    """Rank through SearchService (the API's path) in one mode, without near-duplicate folding.

    `class_weight` replaces the weight of the WordNet classes a query names (0: that re-rank off);
    `depth` results are kept per query.
    """
    index = Index(index_dir)
    try:
        service = service_over(index, models, cache_dir)
        if class_weight is not None:
            service.pipeline.bridge.class_weight = class_weight

        def ranked(query: str) -> list[str]:
            if mode == "semantic":
                return [hit.record.source for hit in service.search_text(query, depth)]
            words = CompoundQuery(positive=(Part(query),))  # a caption is plain words, not `a + b - c`
            request = SearchRequest(words, mode=mode, top_k=depth)
            return [hit.record.source for hit in service.search(request).hits]

        return {query: ranked(query) for query in queries}
    finally:
        index.close()


def stored(index_dir: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """An index's `vectors` or `features` as float32, with the source of each row."""
    index = Index(index_dir)
    try:
        matrix = np.asarray(getattr(index, name), dtype=np.float32)
        return matrix, [record.source for record in index.records(list(range(index.count)))]
    finally:
        index.close()


def ranked(scores: np.ndarray, sources: list[str], queries: list[str]) -> Ranking:
    """Top sources per query from a (queries × images) score matrix."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(KS)]
    return {query: [sources[int(row)] for row in order[i]] for i, query in enumerate(queries)}


def unaligned_ranking(index_dir: Path, models: Models, queries: list[str]) -> tuple[Ranking, int]:
    """The original design: PCA of raw pooled features to the text dimension, cosine with text embeddings."""
    from sklearn.decomposition import PCA

    features, sources = stored(index_dir, "features")
    text = models.text.encode(queries)
    dim = min(text.shape[1], features.shape[0], features.shape[1])
    projected = np.asarray(PCA(n_components=dim, random_state=0).fit_transform(features), dtype=np.float32)
    projected /= np.linalg.norm(projected, axis=1, keepdims=True).clip(min=1e-12)
    # Fewer images than text dimensions: compare on the first `dim` coordinates (images zero-padded).
    return ranked(text[:, :dim] @ projected.T, sources, queries), dim


def build(
    folder: Path, index_dir: Path, pipeline: Pipeline, pca_dim: int, settings: Settings, centred: bool = False
) -> BuildReport:
    """One index build through the service's build path, with the pipeline's bridge parameters."""
    config = BuildConfig(pca_dim=pca_dim, pca_centred=centred, max_pixels=settings.max_image_pixels)
    return build_index(FolderSource(folder), index_dir, pipeline, config, progress=sys.stderr.isatty())


def vector_info(index_dir: Path) -> tuple[str, int]:
    """Stored vector dimension and size in bytes of vectors.npy."""
    index = Index(index_dir)
    try:
        return str(index.dim), (index.path / VECTORS).stat().st_size
    finally:
        index.close()


def print_table(rows: list[Row]) -> None:
    """The result table, in percent."""
    print(f"{'method':<44} {'dim':>5} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'nDCG@10':>8} {'vectors.npy':>12}")
    for row in rows:
        size = f"{row.vector_bytes:,} B" if row.vector_bytes is not None else "-"
        cells = " ".join(f"{row.recall[k]:>6.1f}" for k in KS)
        print(f"{row.name:<44} {row.dim:>5} {cells} {row.recall[0]:>8.1f} {size:>12}")


def fp32_models(models: Models, settings: Settings) -> Models | None:
    """The same models with the float32 CPU image encoder, when the default one is int8."""
    if models.image.precision != "int8":
        return None
    image = packaged_image(settings, "fp32")  # the same labeller (IMGSEARCH_LABELLER)
    image.load(models.image.device, models.image.dtype)
    return dataclasses.replace(models, image=image)


def other_rows(
    args: argparse.Namespace,
    folder: Path,
    scratch: Path,
    models: Models,
    settings: Settings,
    queries: list[str],
    relevant: dict[str, set[str]],
) -> list[Row]:
    """The baselines and variants: random, unaligned, first bridge, ConSE alone, no PCA, centred PCA."""
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    first_bridge = BridgeParams(names="short", definition_weight=0.0, references="")
    first = Pipeline(models, make_bridge(models, first_bridge, settings.cache_dir))
    conse = Pipeline(models, make_bridge(models, BridgeParams(references=""), settings.cache_dir))
    main_dir, plain_dir = scratch / f"index-pca{args.pca_dim}", scratch / "index-nopca"
    if args.pca_dim:
        build(folder, plain_dir, pipeline, 0, settings)
    else:
        plain_dir = main_dir
    first_dir = scratch / "index-first-bridge"
    build(folder, first_dir, first, args.pca_dim, settings)
    conse_dir = scratch / "index-conse-only"
    build(folder, conse_dir, conse, args.pca_dim, settings)
    unaligned, unaligned_dim = unaligned_ranking(main_dir, models, queries)
    plain_dim, plain_bytes = vector_info(plain_dir)
    rows = [
        Row("random ranking (expected)", "-", random_recall(queries, relevant)),
        Row("unaligned (PCA of raw features)", str(unaligned_dim), recall(unaligned, relevant)),
        Row(
            "first bridge (short names, 7 templates)",
            vector_info(first_dir)[0],
            recall(service_ranking(first_dir, models, settings.cache_dir, queries), relevant),
        ),
        Row(
            "ConSE alone (lemmas + definitions, no reference set)",
            vector_info(conse_dir)[0],
            recall(service_ranking(conse_dir, models, settings.cache_dir, queries), relevant),
        ),
        Row(
            "bridge, no PCA",
            plain_dim,
            recall(service_ranking(plain_dir, models, settings.cache_dir, queries), relevant),
            plain_bytes,
        ),
    ]
    if args.pca_dim:
        centred_dir = scratch / "index-centred"
        build(folder, centred_dir, pipeline, args.pca_dim, settings, centred=True)
        centred = service_ranking(centred_dir, models, settings.cache_dir, queries)
        main_dim, main_bytes = vector_info(main_dir)
        rows.append(
            Row(f"bridge, PCA {args.pca_dim} centred", main_dim, recall(centred, relevant), main_bytes)
        )
    return rows


@dataclass(frozen=True)
class Staged:
    """The staged collection and its built default index: what every table of a run ranks."""

    originals: list[Stamp]  # the stamps under their own paths
    staged: list[Stamp]  # the same stamps under the paths they were staged at
    index_dir: Path
    report: BuildReport
    models: Models
    cache_dir: Path

    def ranking(
        self, queries: list[str], mode: Mode = "semantic", class_weight: float | None = None, depth: int = 10
    ) -> Ranking:
        """Every query ranked through SearchService over the default index."""
        return service_ranking(
            self.index_dir, self.models, self.cache_dir, queries, mode, class_weight, depth
        )


def naming_rows(
    run: Staged, queries: list[str], relevant: dict[str, set[str]]
) -> tuple[list[Row], dict[str, float | str]]:
    """Hybrid beside semantic on the named and the unnamed caption queries of a mixed staging."""
    pairs = zip(run.originals, run.staged, strict=True)
    named = {renamed.path for stamp, renamed in pairs if stamp.path == renamed.path}
    rows: list[Row] = []
    result: dict[str, float | str] = {}
    by_mode = {"semantic": run.ranking(queries), "hybrid": run.ranking(queries, "hybrid")}
    for subset, chosen in subsets(queries, relevant, named).items():
        if subset == "all" or not chosen:
            continue
        for mode, ranked in by_mode.items():
            found = recall({query: ranked[query] for query in chosen}, relevant)
            rows.append(Row(f"{subset} captions ({len(chosen)} queries), {mode}", "-", found))
            result |= {f"{subset}_{mode}_r{k}": found[k] for k in (1, 10)} | {
                f"{subset}_{mode}_ndcg10": found[0]
            }
    return rows, result


def generic_rows(run: Staged, split: str) -> tuple[list[Row], dict[str, float | str]]:
    """The generic class-word queries over the default index, semantic and hybrid, on one half's pictures."""
    folders = generic_queries(run.originals)
    queries = sorted(set(folders.values()))
    relevant = relevant_generic(run.originals, run.staged, run.report, folders)
    half_of = {stamp.path: split_of(stamp.caption) for stamp in run.staged}
    count = len(run.staged)
    rows: list[Row] = []
    result: dict[str, float | str] = {}
    for mode in ("semantic", "hybrid"):
        found = half_recall(run.ranking(queries, mode, depth=count), relevant, half_of, split)
        rows.append(Row(f"generic class words ({len(queries)} queries), {mode}", "-", found))
        key = "generic" if mode == "semantic" else "generic_hybrid"
        result |= {f"{key}_r{k}": found[k] for k in (1, 10)} | {f"{key}_ndcg10": found[0]}
    return rows, result


def caption_rows(
    args: argparse.Namespace, run: Staged, settings: Settings, queries: list[str]
) -> tuple[list[Row], dict[str, float | str]]:
    """The caption queries: every index variant (unless --short), the default, its variants, hybrid."""
    folder, scratch = run.index_dir.parent / "images", run.index_dir.parent
    relevant = relevant_captions(run.staged, run.report)
    models = run.models
    main_dim, main_bytes = vector_info(run.index_dir)
    bridge = recall(run.ranking(queries), relevant)
    rows = [] if args.short else other_rows(args, folder, scratch, models, settings, queries, relevant)
    default = f"bridge, --pca-dim {args.pca_dim} (default)"
    rows.append(Row(f"{default}, {models.image.precision}", main_dim, bridge, main_bytes))
    no_classes = recall(run.ranking(queries, class_weight=0.0), relevant)
    rows.append(Row(f"{default}, without WordNet classes", main_dim, no_classes, main_bytes))
    hybrid = recall(run.ranking(queries, "hybrid"), relevant)
    rows.append(Row(f"{default}, hybrid: + names, folders, text", main_dim, hybrid, main_bytes))
    result: dict[str, float | str] = {f"r{k}": bridge[k] for k in KS}
    result |= {"ndcg10": bridge[0], "precision": models.image.precision, "text": models.text.model_id}
    result["no_classes_r10"] = no_classes[10]
    fp32 = None if args.no_fp32 else fp32_models(models, settings)
    if fp32 is not None:
        fp32_dir = scratch / "index-fp32"
        fp32_pipeline = Pipeline(fp32, make_bridge(fp32, BridgeParams(), settings.cache_dir))
        build(folder, fp32_dir, fp32_pipeline, args.pca_dim, settings)
        exact = recall(service_ranking(fp32_dir, fp32, settings.cache_dir, queries), relevant)
        rows.append(Row(f"{default}, fp32", main_dim, exact, main_bytes))
        result["fp32_r10"] = exact[10]
    if not args.short:
        result["unaligned_r10"] = rows[1].recall[10]
    result |= {f"bridge_r{k}": bridge[k] for k in KS} | {"hybrid_r1": hybrid[1], "hybrid_r10": hybrid[10]}
    if args.names == "mixed":
        subset_rows, found = naming_rows(run, queries, relevant)
        rows += subset_rows
        result |= found
    return rows, result


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch the data, build the indexes, rank every query, print the table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    settings = Settings(text_model=args.text_model) if args.text_model else Settings()
    stamps = fetch_stamps(args.cache_dir.expanduser())
    originals = collect(stamps, args.limit)
    if not originals:
        log.error("no captioned stamps under %s", stamps)
        return 1
    queries = sorted({s.caption for s in originals if args.split in ("all", split_of(s.caption))})
    models = prepare(settings, "packaged", with_lm=False)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    with tempfile.TemporaryDirectory(prefix="relevance-") as scratch:
        folder = Path(scratch) / "images"
        staged = stage_images(stamps, originals, folder, args.names)
        main_dir = Path(scratch) / f"index-pca{args.pca_dim}"
        report = build(folder, main_dir, pipeline, args.pca_dim, settings)
        run = Staged(originals, staged, main_dir, report, models, settings.cache_dir)
        rows: list[Row] = []
        result: dict[str, float | str] = {"split": args.split, "names": args.names}
        if args.queries in ("captions", "both"):
            found, numbers = caption_rows(args, run, settings, queries)
            rows, result = rows + found, result | numbers
        if args.queries in ("generic", "both"):
            found, generic = generic_rows(run, args.split)
            rows, result = rows + found, result | generic
        if args.cutoffs:
            from bench.cutoff import cutoff_rows  # it reads this module's dev sets

            result |= cutoff_rows(run, args.split, queries)
    elapsed = time.perf_counter() - started
    print(
        f"data: {PACKAGE}, {len(staged)} images ({len(report.duplicates)} byte-identical, "
        f"{len(report.skipped)} skipped) → {len(staged) - len(report.duplicates) - len(report.skipped)} "
        f"index entries; {len(queries)} distinct captions as queries (split={args.split}, names={args.names})"
    )
    print_table(rows)
    print(f"run time: {elapsed:.0f} s")
    cells = (
        f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in result.items()
    )
    print("RESULT relevance " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
