"""What kind of picture it is and what is plain to see in it: medium (photo, drawing, screenshot) and a
dominant colour, each only with its evidence.

A picture's pixels (a small copy) say how flat its colours are, how many it has and how grainy it is:
clip-art and drawings are mostly flat areas of few colours, photos have grain and shading in many
colours; a picture very close to the reference set (captioned clip-art, app/references.py) is clip-art.
Only clear cases are said; most pictures get no medium word. The classifier's
"web site" class names a screenshot. A colour is said only when one covers most of the picture (a drawing's
white left out: it is a background as often as not), or when the picture has no colour at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 128  # pixels on the longest side of the copy the statistics read
SCREENSHOT_LABEL = "web site"  # the ImageNet class of screenshots
GREY = 0.97  # share of colourless pixels in a black-and-white picture
QUANT = 16  # colour levels per channel when comparing neighbours (JPEG noise stays within a level)


@dataclass(frozen=True)
class Look:
    """Something plain to see, the words that say it and how strong the evidence is (0–1)."""

    kind: str  # "medium" or "colour"
    phrase: str  # "photo", "drawing", "screenshot", "document"; "mostly red", "black-and-white"
    score: float
    source: str  # "pixels", "reference", "label" (the classifier), "index" (what the index read)


@dataclass(frozen=True)
class LookThresholds:
    """When a medium or a colour is said (chosen on the description bench's dev set)."""

    flat_drawing: float = 0.7  # share of flat pixels above which a coloured picture is drawn
    colours_drawing: int = 400  # …and distinct colours below which
    flat_photo: float = 0.4  # share of flat pixels below which a picture may be a photo
    colours_photo: int = 600  # …distinct colours above which a coloured one is
    texture: float = 0.4  # …and share of small steps between neighbours above which
    reference: float = 0.8  # nearest reference cosine that makes a picture clip-art on its own
    screenshot: float = 0.3  # probability of the classifier's "web site" class
    colour: float = 0.55  # share of the (foreground) pixels one colour must cover
    colour_ratio: float = 2.5  # …and how many times the next colour's share


@dataclass(frozen=True)
class Pixels:
    """Statistics of a picture's small copy."""

    flat: float  # share of pixels equal (at QUANT levels) to their right and lower neighbours
    colours: int  # distinct colours at 32 levels per channel
    texture: float  # share of small brightness steps (2–24 of 255) between neighbours, white left out
    grey: bool  # no colour at all
    names: np.ndarray  # colour name index per pixel (COLOURS)
    white: np.ndarray  # bool per pixel: near white


COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")


def _colour_names(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour name index (COLOURS) and colourlessness of each pixel of an (n, 3) array in 0–255."""
    hsv = np.asarray(Image.fromarray(rgb[None].astype(np.uint8), "RGB").convert("HSV"), dtype=np.float32)[0]
    h, s, v = hsv[:, 0] * 360 / 255, hsv[:, 1] / 255, hsv[:, 2] / 255
    names = np.full(len(rgb), COLOURS.index("grey"))
    bins = [(15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (255, "blue"), (290, "purple"),
            (345, "pink"), (361, "red")]  # fmt: skip
    hue = np.zeros(len(rgb), dtype=np.int64)
    for edge, name in reversed(bins):
        hue[h < edge] = COLOURS.index(name)
    coloured = s >= 0.25
    names[coloured] = hue[coloured]
    brown = coloured & np.isin(hue, [COLOURS.index("orange"), COLOURS.index("red")]) & (v < 0.55)
    names[brown] = COLOURS.index("brown")
    names[~coloured & (v > 0.85)] = COLOURS.index("white")
    names[v < 0.18] = COLOURS.index("black")
    return names, s < 0.12


def pixels(image: Image.Image) -> Pixels:
    """The statistics of a picture (read from a copy at most SIDE pixels on its longest side)."""
    small = image.convert("RGB")
    small.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.int32)
    levels = rgb // (256 // QUANT)
    same = (levels[:-1, :-1] == levels[:-1, 1:]).all(-1) & (levels[:-1, :-1] == levels[1:, :-1]).all(-1)
    coarse = rgb // 8
    colours = len(np.unique(coarse[..., 0] * 1024 + coarse[..., 1] * 32 + coarse[..., 2]))
    flat_rgb = rgb.reshape(-1, 3)
    names, colourless = _colour_names(flat_rgb)
    white = names == COLOURS.index("white")
    return Pixels(
        float(same.mean()) if same.size else 1.0,
        colours,
        _texture(rgb),
        bool(colourless.mean() >= GREY),
        names,
        white & colourless,
    )


def _texture(rgb: np.ndarray) -> float:
    """Share of small brightness steps between neighbours (a photo's grain and shading), white left out."""
    grey = rgb @ np.array([299, 587, 114]) // 1000
    steps, white = [], []
    for a, b in ((grey[:, 1:], grey[:, :-1]), (grey[1:, :], grey[:-1, :])):
        steps.append(np.abs(a - b).ravel())
        white.append(((a > 245) & (b > 245)).ravel())
    step = np.concatenate(steps)[~np.concatenate(white)]
    return float(((step >= 2) & (step <= 24)).mean()) if step.size else 0.0


def medium(
    stats: Pixels, nearest_reference: float, screenshot: float, t: LookThresholds | None = None
) -> Look | None:
    """Photo, drawing or screenshot, when the evidence says so (None otherwise)."""
    t = t or LookThresholds()
    if screenshot >= t.screenshot:
        return Look("medium", "screenshot", screenshot, "label")
    if nearest_reference >= t.reference:
        return Look("medium", "drawing", nearest_reference, "reference")
    if stats.grey and stats.colours <= 4:  # black on white: a line drawing or a silhouette
        return Look("medium", "drawing", stats.flat, "pixels")
    if not stats.grey and stats.flat >= t.flat_drawing and stats.colours <= t.colours_drawing:
        return Look("medium", "drawing", stats.flat, "pixels")
    coloured = stats.grey or stats.colours >= t.colours_photo
    if coloured and stats.flat <= t.flat_photo and stats.texture >= t.texture:
        return Look("medium", "photo", stats.texture, "pixels")
    return None


def colour(stats: Pixels, t: LookThresholds | None = None) -> Look | None:
    """'black-and-white' for a colourless picture, 'mostly X' when one colour clearly dominates what is
    not white (white is a background as often as not)."""
    t = t or LookThresholds()
    if stats.grey:
        return Look("colour", "black-and-white", 1.0, "pixels")
    names = stats.names[~stats.white]
    if len(names) < 0.05 * len(stats.names):
        return None
    shares = np.bincount(names, minlength=len(COLOURS)) / len(names)
    first, second = np.argsort(shares)[::-1][:2]
    if shares[first] >= t.colour and shares[first] >= t.colour_ratio * shares[second]:
        return Look("colour", f"mostly {COLOURS[first]}", float(shares[first]), "pixels")
    return None


def of(image: Image.Image, nearest_reference: float, labels: list[tuple[str, float]]) -> tuple[Look, ...]:
    """The medium and colour of a picture, from its pixels, its nearest reference and its labels."""
    stats = pixels(image)
    screenshot = sum(p for label, p in labels if label == SCREENSHOT_LABEL)
    found = medium(stats, nearest_reference, screenshot)
    shade = colour(stats)
    return tuple(look for look in (found, shade) if look is not None)
