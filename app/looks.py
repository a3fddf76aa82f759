"""What kind of picture it is and what is plain to see in it: medium (photo, drawing, screenshot) and a
dominant colour, each only with its evidence.

A picture's pixels (a small copy) say how flat its colours are and how many it has: clip-art and drawings
are mostly flat areas of few colours, photos have texture and thousands; the reference set (captioned
clip-art, app/references.py) confirms a drawing when its nearest pictures are close. The classifier's
"web site" class names a screenshot. A colour is said only when one covers most of the picture (a drawing's
white background left out), or when the picture has no colour at all (black and white).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 128  # pixels on the longest side of the copy the statistics read
SCREENSHOT_LABEL = "web site"  # the ImageNet class of screenshots
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

    flat_drawing: float = 0.55  # share of flat pixels above which a picture is drawn
    colours_drawing: int = 600  # …and distinct colours below which
    flat_photo: float = 0.35  # share of flat pixels below which a picture is a photo
    colours_photo: int = 1500  # …and distinct colours above which
    reference: float = 0.8  # nearest reference cosine that confirms a drawing on its own
    screenshot: float = 0.3  # probability of the classifier's "web site" class
    colour: float = 0.55  # share of the (foreground) pixels one colour must cover
    colour_ratio: float = 2.5  # …and how many times the next colour's share
    grey: float = 0.97  # share of colourless pixels of a black-and-white picture


@dataclass(frozen=True)
class Pixels:
    """Statistics of a picture's small copy."""

    flat: float  # share of pixels equal (at QUANT levels) to their right and lower neighbours
    colours: int  # distinct colours at 32 levels per channel
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
    return Pixels(float(same.mean()) if same.size else 1.0, colours, names, white & colourless)


def medium(
    stats: Pixels, nearest_reference: float, screenshot: float, t: LookThresholds | None = None
) -> Look | None:
    """Photo, drawing or screenshot, when the evidence says so (None otherwise)."""
    t = t or LookThresholds()
    if screenshot >= t.screenshot:
        return Look("medium", "screenshot", screenshot, "label")
    if stats.flat >= t.flat_drawing and stats.colours <= t.colours_drawing:
        return Look("medium", "drawing", stats.flat, "pixels")
    if nearest_reference >= t.reference and stats.flat >= t.flat_photo:
        return Look("medium", "drawing", nearest_reference, "reference")
    if stats.flat <= t.flat_photo and stats.colours >= t.colours_photo:
        return Look("medium", "photo", 1.0 - stats.flat, "pixels")
    return None


def colour(stats: Pixels, drawn: bool, t: LookThresholds | None = None) -> Look | None:
    """'black-and-white' for a colourless picture, 'mostly X' when one colour clearly dominates."""
    t = t or LookThresholds()
    names = stats.names[~stats.white] if drawn else stats.names
    if len(names) < 0.05 * len(stats.names):
        return None
    shares = np.bincount(names, minlength=len(COLOURS)) / len(names)
    colourless = shares[[COLOURS.index(c) for c in ("black", "white", "grey")]].sum()
    if colourless >= t.grey:
        return Look("colour", "black-and-white", float(colourless), "pixels")
    first, second = np.argsort(shares)[::-1][:2]
    if shares[first] >= t.colour and shares[first] >= t.colour_ratio * shares[second]:
        return Look("colour", f"mostly {COLOURS[first]}", float(shares[first]), "pixels")
    return None


def of(image: Image.Image, nearest_reference: float, labels: list[tuple[str, float]]) -> tuple[Look, ...]:
    """The medium and colour of a picture, from its pixels, its nearest reference and its labels."""
    stats = pixels(image)
    screenshot = sum(p for label, p in labels if label == SCREENSHOT_LABEL)
    found = medium(stats, nearest_reference, screenshot)
    shade = colour(stats, drawn=found is not None and found.phrase == "drawing")
    return tuple(look for look in (found, shade) if look is not None)
