"""Image-side relevance levers on the Tux Paint stamps, tune half: multi-crop, Lite0 + Lite2, colour.

The stamps are decoded and encoded once (int8 CPU encoders, mirrored average, as the build does),
for the whole picture and for crops, and cached; each variant then rebuilds only what it changes
(label distribution → text-space vectors → PCA → ranking with the service's re-ranks), so it costs
seconds. The baseline row is the current default computed the same way.

    .venv/bin/python -m bench.image_levers --split tune [--lite2 /path/to/efficientnet-lite2.pth]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.bridge import Bridge, BridgeParams
from app.encoders.base import ImageEncoder, ImageOutput
from app.encoders.efficientnet import EfficientNetLiteEncoder
from app.pca import DEFAULT_DIM, Pca
from app.preprocessing import mirror, stack
from app.ranking import rerank_by_look
from app.registry import make_bridge, prepare
from app.settings import Settings
from bench.colour import ColourHint, histogram, layers, query_terms, rerank_by_colour
from bench.relevance import KS, opaque_name, recall
from scripts.tuxpaint import BENCH_CACHE, Stamp, collect, fetch_stamps, split_of

log = logging.getLogger("bench.image_levers")

# Crops of the decoded picture as fractions (left, top, right, bottom): the 2×2 grid and the centre,
# at half size ("half") and at two-thirds size, overlapping ("third").
CROPS = {
    "half": (
        (0, 0, 0.5, 0.5), (0.5, 0, 1, 0.5), (0, 0.5, 0.5, 1), (0.5, 0.5, 1, 1), (0.25, 0.25, 0.75, 0.75),
    ),
    "third": (
        (0, 0, 2 / 3, 2 / 3), (1 / 3, 0, 1, 2 / 3), (0, 1 / 3, 2 / 3, 1), (1 / 3, 1 / 3, 1, 1),
        (1 / 6, 1 / 6, 5 / 6, 5 / 6),
    ),
}  # fmt: skip
VIEWS = 1 + sum(len(crops) for crops in CROPS.values())  # whole picture first


@dataclasses.dataclass
class Gallery:
    """The distinct stamps (by sha256, in the build's row order) and what each is relevant to."""

    pictures: list[Image.Image]
    alphas: list[Image.Image | None]
    relevant: dict[str, set[str]]  # row name → captions
    names: list[str]


def load_gallery(stamps: Path, selected: list[Stamp]) -> Gallery:
    """Decode every stamp once, fold byte-identical files as the build does (first opaque name wins)."""
    by_name = sorted(selected, key=opaque_name)
    seen: dict[str, str] = {}
    pictures: list[Image.Image] = []
    alphas: list[Image.Image | None] = []
    relevant: dict[str, set[str]] = {}
    names: list[str] = []
    for stamp in by_name:
        raw = (stamps / stamp.path).read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            relevant[seen[digest]].add(stamp.caption)
            continue
        name = opaque_name(stamp)
        seen[digest] = name
        picture, alpha = layers(raw)
        pictures.append(picture)
        alphas.append(alpha)
        relevant[name] = {stamp.caption}
        names.append(name)
    return Gallery(pictures, alphas, relevant, names)


def colours_of(gallery: Gallery, softness: float) -> np.ndarray:
    """(N, 11) colour-term distribution of every picture (bench/colour.py)."""
    return np.stack(
        [histogram(p, a, softness) for p, a in zip(gallery.pictures, gallery.alphas, strict=True)]
    )


def views_of(picture: Image.Image) -> list[Image.Image]:
    """The whole picture, then every crop of CROPS."""
    width, height = picture.size
    crops = [
        picture.crop((round(l * width), round(t * height), round(r * width), round(b * height)))
        for layout in CROPS.values()
        for l, t, r, b in layout  # noqa: E741
    ]
    return [picture, *crops]


def encode_views(
    encoder: ImageEncoder, pictures: list[Image.Image], path: Path, crops: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, 1000) logits and (N, V, F) features, mirrored average, V = VIEWS or 1; cached in `path`."""
    if path.is_file():
        with np.load(path) as data:
            return np.asarray(data["logits"]), np.asarray(data["features"])
    preprocess = encoder.inputs  # every input size the encoder takes (the packaged one: 224 and 260 px)
    logits, features = [], []
    for i, picture in enumerate(pictures):
        views = views_of(picture) if crops else [picture]
        pixels = stack([preprocess(view) for view in views])
        plain, mirrored = encoder.encode(pixels), encoder.encode(mirror(pixels))
        assert plain.logits is not None and mirrored.logits is not None  # as Pipeline.run_encoder
        logits.append(((plain.logits + mirrored.logits) / 2).numpy().astype(np.float16))
        features.append(((plain.features + mirrored.features) / 2).numpy().astype(np.float16))
        if i % 50 == 0:
            log.info("%s: %d/%d pictures", encoder.model_id, i, len(pictures))
    result = np.stack(logits), np.stack(features)
    np.savez(path, logits=result[0], features=result[1])
    return result


@dataclasses.dataclass
class Bench:
    """What every variant shares: the queries, their embeddings, the bridge, the gallery."""

    queries: list[str]
    embeddings: np.ndarray
    bridge: Bridge
    gallery: Gallery
    features: np.ndarray  # (N, VIEWS, 1280) Lite0 features: references and the visual re-rank


def log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis."""
    return np.asarray(torch.log_softmax(torch.from_numpy(logits.astype(np.float32)), dim=-1).numpy())


def rank_all(
    bench: Bench, log_p: np.ndarray, features: np.ndarray, colours: tuple[np.ndarray, float] | None = None
) -> dict[int, float]:
    """R@k and nDCG@10 of a variant: label log-probabilities and features per image, default bridge."""
    output = ImageOutput(torch.from_numpy(features.astype(np.float32)), torch.from_numpy(log_p))
    raw = np.concatenate(
        [bench.bridge.to_text_space(ImageOutput(output.features[i : i + 64], output.logits[i : i + 64]))  # type: ignore[index]
         for i in range(0, len(log_p), 64)]
    )  # fmt: skip
    pca = Pca.fit(raw, DEFAULT_DIM)
    vectors = pca.transform(raw).astype(np.float16).astype(np.float32)
    unit = torch.nn.functional.normalize(torch.from_numpy(features.astype(np.float32)), dim=-1)
    stored = unit.numpy().astype(np.float16)
    queries = pca.transform(bench.embeddings)
    ranking: dict[str, list[str]] = {}
    rows = np.arange(len(vectors))
    for query, embedding, vector in zip(bench.queries, bench.embeddings, queries, strict=True):
        scores = np.clip(vectors @ vector, -1.0, 1.0)
        order = np.lexsort((rows, -scores))
        hits = [(int(row), float(scores[row])) for row in order]
        hint = bench.bridge.visual_hint(embedding)
        if hint is not None:
            hits = rerank_by_look(hits, hint, stored)
        terms = query_terms(query)
        if colours is not None and terms:
            hits = rerank_by_colour(hits, ColourHint(terms, colours[1]), colours[0])
        ranking[query] = [bench.gallery.names[row] for row, _ in hits[: max(KS)]]
    return recall(ranking, bench.gallery.relevant)


def combine(log_p: np.ndarray, how: str, views: Sequence[int]) -> np.ndarray:
    """Log of the views' label distributions combined: mean, max (renormalised) or whole+mean of crops."""
    probs = np.exp(log_p[:, list(views)])
    if how == "mean":
        combined = probs.mean(axis=1)
    elif how == "max":
        combined = probs.max(axis=1)
    elif how == "whole-half":  # the whole picture weighs as much as all its crops together
        combined = 0.5 * probs[:, 0] + 0.5 * probs[:, 1:].mean(axis=1)
    else:
        raise ValueError(how)
    combined /= combined.sum(axis=1, keepdims=True)
    logged: np.ndarray = np.log(np.clip(combined, 1e-12, None))
    return logged


def print_row(name: str, result: dict[int, float]) -> None:
    """One table row, in percent."""
    cells = " ".join(f"{result[k]:6.1f}" for k in KS)
    print(f"{name:<58} {cells} {result[0]:8.1f}", flush=True)


def variants(
    bench: Bench,
    lite0: tuple[np.ndarray, np.ndarray],
    lite2: tuple[np.ndarray, np.ndarray] | None,
    levers: Sequence[str],
) -> None:
    """Every measured variant, one row each."""
    log0 = log_probs(lite0[0])
    whole = lite0[1][:, 0]
    row: Callable[[str, np.ndarray, np.ndarray], None] = lambda n, p, f: print_row(n, rank_all(bench, p, f))  # noqa: E731
    print(f"{'variant':<58} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'nDCG@10':>8}")
    row("baseline: Lite0 int8, whole picture (default)", log0[:, 0], whole)
    half, third = list(range(0, 6)), [0, *range(6, 11)]
    for name, views in (("half", half), ("third", third)) if "crops" in levers else ():
        for how in ("mean", "max", "whole-half"):
            row(f"multi-crop {name} (2×2 + centre), labels {how}", combine(log0, how, views), whole)
        row(
            f"multi-crop {name}, labels mean, features mean",
            combine(log0, "mean", views),
            lite0[1][:, views].mean(axis=1),
        )
    if lite2 is not None:
        log2 = log_probs(lite2[0])
        row("Lite2 int8 alone (Lite0 features for references)", log2[:, 0], whole)
        both = np.log((np.exp(log0[:, 0]) + np.exp(log2[:, 0])) / 2)
        row("ensemble Lite0 + Lite2 int8 (probabilities averaged)", both, whole)
        mixed = np.log(0.25 * np.exp(log0[:, 0]) + 0.75 * np.exp(log2[:, 0]))
        row("ensemble Lite0 + Lite2 int8 (probabilities 0.25 / 0.75)", mixed, whole)
        logits_mean = log_probs((lite0[0][:, 0].astype(np.float32) + lite2[0][:, 0].astype(np.float32)) / 2)
        row("ensemble Lite0 + Lite2 int8 (logits averaged)", logits_mean, whole)
    for softness, weights in (
        (0.0, (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)),
        (8.0, (0.05, 0.1, 0.2)),
        (15.0, (0.1,)),
    ):
        if "colour" not in levers:
            break
        table = colours_of(bench.gallery, softness)
        for weight in weights:
            name = f"colour re-rank of the best 200, softness {softness:g}, weight {weight}"
            print_row(name, rank_all(bench, log0[:, 0], whole, (table, weight)))


def main(argv: Sequence[str] | None = None) -> int:
    """Encode once (cached), then print one row per variant."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["tune", "report", "all"], default="tune")
    parser.add_argument("--lite2", type=Path, default=None, help="EfficientNet-Lite2 weights (.pth)")
    parser.add_argument("--lite2-size", type=int, default=260, help="input size of Lite2 (its own: 260)")
    parser.add_argument("--levers", nargs="+", default=["crops", "ensemble", "colour"])
    parser.add_argument("--cache", type=Path, default=BENCH_CACHE / "image-levers")
    args = parser.parse_args(argv)
    settings = Settings()
    stamps = fetch_stamps(BENCH_CACHE)
    selected = collect(stamps, None)
    queries = sorted({s.caption for s in selected if args.split in ("all", split_of(s.caption))})
    gallery = load_gallery(stamps, selected)
    models = prepare(settings, "packaged", with_lm=False)
    args.cache.mkdir(parents=True, exist_ok=True)
    own = EfficientNetLiteEncoder(cache_dir=settings.cache_dir, precision=models.image.precision)
    own.load(models.image.device, models.image.dtype)
    lite0 = encode_views(own, gallery.pictures, args.cache / f"lite0-{own.precision}.npz")
    configured = None  # the packaged image encoder as the settings make it (IMGSEARCH_LABELLER)
    if models.image.label_model:
        name = f"packaged-{models.image.precision}-{models.image.label_model}.npz"
        configured = encode_views(models.image, gallery.pictures, args.cache / name, crops=False)
    lite2 = None
    if args.lite2 is not None and "ensemble" in args.levers:
        size = args.lite2_size
        # Another input size than Lite2's own 260 px gets its own ONNX cache (the export's shape is fixed).
        onnx_cache = settings.cache_dir if size == 260 else args.cache / f"onnx-{size}"
        encoder = EfficientNetLiteEncoder(str(args.lite2), variant=2, cache_dir=onnx_cache, precision="int8")
        encoder.spec = dataclasses.replace(encoder.spec, size=size)
        encoder.load(torch.device("cpu"), torch.float32)
        suffix = "" if size == 260 else f"-{size}px"
        lite2 = encode_views(
            encoder,
            gallery.pictures,
            args.cache / f"lite2-{encoder.precision}-whole{suffix}.npz",
            crops=False,
        )
    bridge = make_bridge(models, BridgeParams(), settings.cache_dir)
    bench = Bench(queries, models.text.encode(queries), bridge, gallery, lite0[1])
    named = sum(bool(query_terms(q)) for q in queries)
    print(f"{len(queries)} queries (split={args.split}), {named} name a colour; {len(gallery.names)} images")
    variants(bench, lite0, lite2, args.levers)
    if configured is not None:
        label = f"packaged default as configured: labels {models.image.label_model}"
        print_row(label, rank_all(bench, log_probs(configured[0][:, 0]), configured[1][:, 0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
