"""Colour lever (measured, not kept: docs/relevance.md): basic colour terms of images and of queries.

ImageNet classes ignore colour ("a red car" and a blue one share a class), yet captions and queries
name colours. Each image's distribution over the eleven basic colour terms (Berlin & Kay): every
pixel of a small copy is given the term of its nearest prototype in CIELAB (or shared among the
terms, `softness`), weighted by opacity, and a plain background (a near-uniform colour that fills
the border and what joins it) is left out. A query naming colours re-ranks its best candidates by
the share of the image in those colours (`rerank_by_colour`, shaped like app.ranking.rerank_by_look).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageCms, ImageOps
from scipy import ndimage

from app.preprocessing import decode
from app.ranking import RERANK_POOL, mix_into_pool
from app.vectors import Hits, read_rows

TERMS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
SIDE = 64  # pixels on the longer side of the copy that is counted
BACKGROUND_DELTA = 12.0  # CIELAB distance within which a pixel belongs to the border's plain colour
BORDER_SHARE = 0.6  # share of the border in one colour that makes it a plain background
SOFTNESS = 0.0  # σ of the soft split between terms (CIELAB units); 0: each pixel to its nearest term
MIN_FOREGROUND = 0.02  # below this share of the picture left, count every pixel (a uniform picture)

# sRGB prototypes per term (a few per term where the term spans light and dark shades).
PROTOTYPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((220, 30, 30), (170, 20, 25), (240, 80, 70)),
    "orange": ((255, 140, 0), (235, 110, 35), (250, 170, 80)),
    "yellow": ((255, 225, 0), (245, 225, 100), (215, 190, 20)),
    "green": ((40, 170, 40), (20, 100, 30), (140, 205, 80), (60, 130, 90)),
    "blue": ((30, 80, 220), (20, 40, 120), (100, 170, 235), (40, 150, 200)),
    "purple": ((130, 50, 160), (85, 30, 110), (175, 125, 215)),
    "pink": ((255, 150, 190), (230, 80, 150), (250, 195, 210)),
    "brown": ((120, 70, 30), (165, 110, 60), (80, 50, 25), (190, 150, 100)),
    "black": ((15, 15, 15), (40, 40, 45)),
    "white": ((250, 250, 250), (235, 235, 225)),
    "grey": ((128, 128, 128), (190, 190, 190), (80, 80, 80)),
}

# Query words → terms: the terms themselves, spelling variants and common near-synonyms.
WORDS: dict[str, tuple[str, ...]] = {term: (term,) for term in TERMS} | {
    "gray": ("grey",),
    "silver": ("grey",),
    "violet": ("purple",),
    "lilac": ("purple",),
    "magenta": ("pink", "purple"),
    "crimson": ("red",),
    "scarlet": ("red",),
    "golden": ("yellow",),
    "gold": ("yellow",),
    "navy": ("blue",),
    "turquoise": ("blue", "green"),
    "cyan": ("blue", "green"),
    "tan": ("brown",),
    "beige": ("brown", "white"),
}
WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class ColourHint:
    """The colour terms a text query names (indices into TERMS) and the weight of their re-rank."""

    terms: tuple[int, ...]
    weight: float


def query_terms(text: str) -> tuple[int, ...]:
    """Indices into TERMS of the colours a query names, in TERMS order ("a blue truck" → blue)."""
    named = {term for word in WORD.findall(text.lower()) for term in WORDS.get(word, ())}
    return tuple(i for i, term in enumerate(TERMS) if term in named)


def colour_hint(text: str, weight: float) -> ColourHint | None:
    """The query's ColourHint, or None when it names no colour or the weight is 0."""
    terms = query_terms(text)
    return ColourHint(terms, weight) if terms and weight > 0 else None


def match(histograms: np.ndarray, terms: tuple[int, ...]) -> np.ndarray:
    """Per image: the share of its counted pixels in the named colours, in [0, 1]."""
    rows = np.asarray(histograms, dtype=np.float32)
    shares: np.ndarray = np.clip(rows[:, list(terms)].sum(axis=1), 0.0, 1.0)
    return shares


@cache
def _to_lab() -> ImageCms.ImageCmsTransform:
    """sRGB → CIELAB (Pillow's LAB mode: L 0–255, a and b offset by 128)."""
    return ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )


def _lab(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 CIELAB: L in 0–100, a and b around 0."""
    converted = ImageCms.applyTransform(image.convert("RGB"), _to_lab())
    assert converted is not None
    raw = np.asarray(converted, dtype=np.float32)
    return np.stack([raw[..., 0] * 100.0 / 255.0, raw[..., 1] - 128.0, raw[..., 2] - 128.0], axis=-1)


@cache
def _prototypes() -> tuple[np.ndarray, np.ndarray]:
    """The prototypes in CIELAB (P, 3) and the term index of each (P,)."""
    colours = [rgb for term in TERMS for rgb in PROTOTYPES[term]]
    owners = [i for i, term in enumerate(TERMS) for _ in PROTOTYPES[term]]
    swatch = Image.new("RGB", (len(colours), 1))
    swatch.putdata(colours)
    return _lab(swatch)[0], np.asarray(owners, dtype=np.int64)


def _border(shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the outermost ring of pixels."""
    ring = np.ones(shape, dtype=bool)
    ring[1:-1, 1:-1] = False
    return ring


def _background(lab: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mask of a plain background: the border's dominant colour and the pixels of it that touch the border."""
    ring = _border(weight.shape) & (weight > 0.5)
    if ring.sum() < 4:
        return np.zeros(weight.shape, dtype=bool)
    colour = np.median(lab[ring], axis=0)
    close = np.linalg.norm(lab - colour, axis=-1) < BACKGROUND_DELTA
    if close[ring].mean() < BORDER_SHARE:
        return np.zeros(weight.shape, dtype=bool)
    regions, _ = ndimage.label(close)
    touching = np.unique(regions[_border(weight.shape) & close])
    return np.isin(regions, touching[touching > 0])


def _memberships(lab: np.ndarray, softness: float) -> np.ndarray:
    """(H, W, terms) share of each pixel per term: its nearest prototype's term, or a soft split.

    With `softness` σ > 0 (CIELAB units) a pixel is shared among the terms by exp(−(d² − d_min²) / 2σ²)
    over each term's nearest prototype distance d: a red-brown pixel counts partly as both.
    """
    centres, owners = _prototypes()
    distances = np.linalg.norm(lab[..., None, :] - centres, axis=-1)
    per_term = np.full((*lab.shape[:2], len(TERMS)), np.inf, dtype=np.float32)
    for term in range(len(TERMS)):
        per_term[..., term] = distances[..., owners == term].min(axis=-1)
    if softness <= 0:
        return np.asarray(per_term.argmin(axis=-1)[..., None] == np.arange(len(TERMS)), dtype=np.float32)
    squared = per_term**2
    shares = np.exp(-(squared - squared.min(axis=-1, keepdims=True)) / (2 * softness**2))
    return np.asarray(shares / shares.sum(axis=-1, keepdims=True), dtype=np.float32)


def histogram(
    picture: Image.Image, alpha: Image.Image | None = None, softness: float = SOFTNESS
) -> np.ndarray:
    """The picture's distribution over TERMS (float32, sums to 1): opacity-weighted, plain background out.

    `picture` is RGB (transparency composited on white, as the build decodes it) and `alpha` its
    alpha channel, or None when the picture is opaque (`layers`).
    """
    small = picture.convert("RGB")
    small.thumbnail((SIDE, SIDE), Image.Resampling.BOX)
    weight = np.ones((small.height, small.width), dtype=np.float32)
    if alpha is not None:
        weight = np.asarray(alpha.resize(small.size, Image.Resampling.BOX), dtype=np.float32) / 255.0
    lab = _lab(small)
    foreground = np.where(_background(lab, weight), 0.0, weight)
    if foreground.sum() < MIN_FOREGROUND * foreground.size:
        foreground = weight if weight.sum() >= MIN_FOREGROUND * weight.size else np.ones_like(weight)
    counts = np.einsum("hw,hwt->t", foreground, _memberships(lab, softness))
    total = float(counts.sum())
    result: np.ndarray = (counts / total if total > 0 else counts).astype(np.float32)
    return result


def layers(raw: bytes) -> tuple[Image.Image, Image.Image | None]:
    """The picture as the build decodes it (transparency on white) and its alpha channel, or None."""
    picture = decode(raw)
    with Image.open(io.BytesIO(raw)) as image:
        image.seek(0)
        opened = ImageOps.exif_transpose(image) or image
        has_alpha = opened.mode in {"RGBA", "LA", "PA"} or "transparency" in opened.info
        alpha = opened.convert("RGBA").getchannel("A") if has_alpha else None
    return picture, alpha.resize(picture.size, Image.Resampling.BOX) if alpha is not None else None


def rerank_by_colour(ranked: Hits, hint: ColourHint, colours: np.ndarray) -> Hits:
    """Re-rank the best RERANK_POOL (row, score) pairs by (score + weight·share) / (1 + weight).

    share ∈ [0, 1] is the part of an image in the query's colours; rows past the pool keep their
    order with share = 0, so scores never increase down the ranking.
    """
    pool = ranked[:RERANK_POOL]
    rows = np.fromiter((row for row, _ in pool), dtype=np.int64, count=len(pool))
    shares = match(read_rows(colours, rows), hint.terms)
    return mix_into_pool(ranked, [float(share) for share in shares], hint.weight)
