"""The OCR dev set, made by code: pictures with known text (rendered with this machine's fonts onto
scikit-image's photos, paper, screens, shop signs and posters) and pictures without text (Tux Paint
stamps of the tune half, scikit-image's photos).

    .venv/bin/python -m bench.ocr_set [--out DIR]   # write the pictures with text and truth.json

`samples()` is what bench/ocr.py and the tests read: each sample's file and the words drawn on it
(empty for a text-free picture). The same seed gives the same pictures on a machine with the same fonts.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from scripts.tuxpaint import BENCH_CACHE, collect, fetch_stamps, split_of

log = logging.getLogger("bench.ocr_set")

SEED = 24
FOLDER = "ocr-dev"  # under the bench cache
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Rgb = tuple[int, int, int]

# scikit-image's bundled photos without text, the backgrounds of the "photo" and "sign" pictures too.
PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "color", "grass", "gravel",
    "horse", "hubble_deep_field", "ihc", "microaneurysms", "moon", "motorcycle_left", "motorcycle_right",
    "phantom", "retina", "rocket", "chessboard_RGB",
)  # fmt: skip
# Left out: text.png, page.png and logo.png hold text, clock_motion.png a clock face's digits.
# Tune-half stamps that hold letters or digits (each engine's readings of the text-free set looked at
# by eye): left out of the text-free set, their words being unknown.
STAMPS_WITH_TEXT = frozenset(
    [
        "household/tools/measuring_tape.png",  # "25' TAPE MEASURE"
        "military/vehicles/bradley.png",  # "226"
        "household/tools/toolbox.png",  # "TOOLS"
        "sports/australian_rules_football.png",  # "Burley"
        "town/roadsigns/give_way_sign.png",  # "GIVE WAY"
        "town/roadsigns/railroad_crossing.png",  # "RAIL ROAD CROSSING"
        "town/roadsigns/xing_school.png",  # "SCHOOL"
        "vehicles/construction/dumper.png",  # "TUX TRUKS"
        "vehicles/emergency/firetruck.png",  # "PALM BEACH COUNTY FIRE-RESCUE"
        "vehicles/flight/planes/747.png",  # "UNITED STATES OF AMERICA"
        "vehicles/locomotive/cartoon/tender.png",  # "Old No. 5"
        "vehicles/ship/cartoon/tugboat.png",  # "SS Tux"
    ]
)

FIRST = ("Maria", "Jonas", "Amelie", "Tomasz", "Ingrid", "Lucas", "Sofia", "Pierre", "Hannah", "Mateo")
LAST = ("Gonzalez", "Lindqvist", "Moreau", "Kowalski", "Okafor", "Bianchi", "Schneider", "Fischer")
SHOPS = (
    "Bakery Rossi", "Café Lumière", "Hardware Store", "Fresh Market", "Pharmacy", "Bookshop Atlas",
    "Pizzeria Napoli", "Flower Garden", "Bicycle Repair", "Golden Dragon", "Fish Market", "Hotel Central",
)  # fmt: skip
ITEMS = ("Bread", "Coffee", "Apples", "Cheese", "Tomatoes", "Butter", "Olive Oil", "Chocolate", "Yoghurt")
TOPICS = ("Quarterly Results", "Project Roadmap", "Team Offsite", "Security Review", "Product Launch")
EVENTS = ("Jazz Festival", "Summer Concert", "Film Night", "Art Exhibition", "Farmers Market", "Book Fair")
PLACES = ("Lisbon", "Porto", "Florence", "Kyoto", "Berlin", "Valencia", "Montreal", "Dublin")
CAPTIONS = ("Welcome to", "Greetings from", "Visit", "Souvenir of", "Hello from")


@dataclass(frozen=True)
class Sample:
    """One picture of the dev set: its file, its kind and the words drawn on it (none: text-free)."""

    path: Path
    kind: str  # photo, paper, screen, sign, poster; stamp or photo-free for text-free pictures
    words: tuple[str, ...]

    @property
    def has_text(self) -> bool:
        """Whether text was drawn on the picture."""
        return bool(self.words)


@cache
def font_files() -> dict[str, str]:
    """Font file stem → path, for the DejaVu and Liberation fonts `fc-list` finds (may be empty)."""
    try:
        listing = subprocess.run(
            ["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return {}
    found = {Path(line).stem: line for line in listing.splitlines() if line.endswith(".ttf")}
    return {stem: path for stem, path in sorted(found.items()) if stem.startswith(("DejaVu", "Liberation"))}


def font(stem: str, size: int) -> Font:
    """A font by file stem ("DejaVuSans-Bold") at `size` px; Pillow's own scalable font when it is missing."""
    path = font_files().get(stem)
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


SANS = ("DejaVuSans", "LiberationSans-Regular", "DejaVuSansCondensed", "LiberationSansNarrow-Regular")
BOLD = ("DejaVuSans-Bold", "LiberationSans-Bold", "DejaVuSerif-Bold", "LiberationSerif-Bold")
SERIF = ("DejaVuSerif", "LiberationSerif-Regular", "DejaVuSerifCondensed")
MONO = ("DejaVuSansMono", "LiberationMono-Regular")


def skimage_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photos as RGB (read from the package, never downloaded)."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    path = next(folder.glob(f"{name}.*"))
    with Image.open(path) as image:
        return image.convert("RGB")


def text_block(lines: Sequence[tuple[str, Font]], colour: Rgb, spacing: float = 0.35) -> Image.Image:
    """Lines of text drawn on a transparent layer, left-aligned, cropped to the ink."""
    heights = [int(f.getbbox("Ag")[3]) + 2 for _, f in lines]
    width = max(int(f.getlength(text)) for text, f in lines) + 8
    layer = Image.new("RGBA", (width, int(sum(h * (1 + spacing) for h in heights)) + 8), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    y = 4.0
    for (text, f), height in zip(lines, heights, strict=True):
        draw.text((4, y), text, font=f, fill=(*colour, 255))
        y += height * (1 + spacing)
    box = layer.getbbox()
    return layer.crop(box) if box else layer


def paste(
    canvas: Image.Image, layer: Image.Image, at: tuple[int, int], angle: float = 0.0, board: Rgb | None = None
) -> None:
    """Paste a text layer at `at` (top-left), rotated by `angle` degrees, on a coloured board when given."""
    if board is not None:
        pad = max(6, layer.height // 4)
        backed = Image.new("RGBA", (layer.width + 2 * pad, layer.height + 2 * pad), (*board, 255))
        backed.alpha_composite(layer, (pad, pad))
        layer = backed
    if angle:
        layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    canvas.paste(layer, at, layer)


def words_of(lines: Sequence[str]) -> tuple[str, ...]:
    """The words of the drawn lines, as written."""
    return tuple(word for line in lines for word in line.split())


def person(rng: random.Random) -> str:
    """A first and last name."""
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def photo_caption(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """A photo with a caption or a banner over it, of varied size, colour and angle."""
    background = skimage_photo(PHOTOS[index % len(PHOTOS)])
    scale = rng.choice((1.0, 1.5, 2.0))
    canvas = background.resize((int(background.width * scale), int(background.height * scale))).convert(
        "RGBA"
    )
    lines = [f"{rng.choice(CAPTIONS)} {rng.choice(PLACES)}"]
    if index % 2:
        lines.append(f"{rng.randint(1990, 2024)}")
    size = int(canvas.width * rng.uniform(0.05, 0.09))
    white = index % 3 != 0
    layer = text_block(
        [(line, font(rng.choice(BOLD + SANS), size)) for line in lines], (255,) * 3 if white else (20, 20, 20)
    )
    board = None if index % 4 < 2 else ((0, 0, 0) if white else (250, 250, 240))
    x = rng.randint(0, max(0, canvas.width - layer.width - 30))
    y = rng.randint(canvas.height // 2, max(canvas.height // 2, canvas.height - layer.height - 30))
    paste(canvas, layer, (x, y), rng.uniform(-12, 12) if index % 3 == 2 else 0.0, board)
    return canvas.convert("RGB"), lines


def scanned(page: Image.Image, rng: random.Random) -> Image.Image:
    """A scanned look: a small tilt, a grey background at the edges, a little blur and noise."""
    tilted = page.rotate(
        rng.uniform(-3, 3), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(200, 200, 195)
    )
    blurred = tilted.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noise = Image.effect_noise(blurred.size, rng.uniform(4, 12)).convert("RGB")
    return Image.blend(blurred, noise, 0.06)


def receipt(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """A till receipt: the shop's name as heading, items with prices, a total."""
    shop = rng.choice(SHOPS)
    items = rng.sample(ITEMS, 4)
    lines = ["RECEIPT", shop, *(f"{item} {rng.randint(1, 9)}.{rng.randint(10, 99)}" for item in items)]
    lines.append(f"Total {rng.randint(10, 60)}.{rng.randint(10, 99)} EUR")
    body = font(rng.choice(MONO), 26)
    layer = text_block(
        [(lines[0], font(rng.choice(BOLD), 44)), *((line, body) for line in lines[1:])], (30, 30, 30)
    )
    page = Image.new("RGB", (layer.width + 120, layer.height + 200), (250, 248, 240))
    page.paste(layer, (60, 80), layer)
    return scanned(page, rng), lines


def letter(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """An invoice or a letter on A4-like paper: a heading, a sender, a few lines of body text."""
    heading = "INVOICE" if index % 2 == 0 else rng.choice(("Dear Customer", "Notice", "Certificate"))
    sender = person(rng)
    body = [
        f"Invoice number {rng.randint(1000, 9999)}",
        f"Customer {sender}",
        f"Delivery to {rng.choice(PLACES)}",
    ]
    if index % 2:
        body = [f"From {sender}", f"Meeting in {rng.choice(PLACES)}", "Please reply soon"]
    lines = [heading, *body]
    size = rng.choice((22, 26, 30))
    layer = text_block(
        [
            (heading, font(rng.choice(BOLD), size * 2)),
            *((line, font(rng.choice(SERIF + SANS), size)) for line in body),
        ],
        (25, 25, 40),
        spacing=0.8,
    )
    page = Image.new("RGB", (1240, 1754), (252, 252, 250))
    page.paste(layer, (120, 150), layer)
    return scanned(page, rng), lines


def screen(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """A screenshot of a web page (a profile with a person's name) or a slide (a title and its presenter)."""
    name = person(rng)
    canvas = Image.new("RGBA", (1280, 800), (255, 255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if index % 2 == 0:
        bar = rng.choice(((33, 37, 41), (13, 71, 161), (46, 125, 50)))
        draw.rectangle((0, 0, 1280, 70), fill=bar)
        title = rng.choice(("Profile", "Contacts", "Members", "Account"))
        paste(canvas, text_block([(title, font(rng.choice(SANS), 30))], (255, 255, 255)), (30, 18))
        lines = [title, name, f"Joined {rng.randint(2010, 2024)}"]
        body = text_block(
            [(name, font(rng.choice(BOLD), 48)), (lines[2], font(rng.choice(SANS), 26))], (40, 40, 40)
        )
        paste(canvas, body, (220, 180))
        draw.ellipse((60, 170, 180, 290), fill=(200, 200, 210))
    else:
        topic = rng.choice(TOPICS)
        lines = [topic, name, rng.choice(PLACES)]
        ground = rng.choice(((255, 255, 255), (240, 244, 250), (30, 40, 60)))
        ink = (240, 240, 240) if sum(ground) < 300 else (20, 30, 60)
        draw.rectangle((0, 0, 1280, 800), fill=ground)
        paste(canvas, text_block([(topic, font(rng.choice(BOLD), 72))], ink), (90, 240))
        paste(canvas, text_block([(f"{name} {lines[2]}", font(rng.choice(SANS), 36))], ink), (90, 420))
    return canvas.convert("RGB"), lines


def sign(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """A shop sign: the shop's name on a coloured board over a wall, at a slight angle."""
    background = skimage_photo(rng.choice(("brick", "gravel", "grass", "coffee", "motorcycle_left")))
    canvas = background.resize((1200, 800)).convert("RGBA")
    shop = rng.choice(SHOPS)
    board, ink = rng.choice((((160, 20, 30), (255, 240, 200)), ((20, 60, 120), (255, 255, 255)),
                             ((240, 220, 80), (20, 20, 20)), ((25, 25, 25), (230, 200, 90))))  # fmt: skip
    size = rng.choice((60, 80, 110))
    layer = text_block([(shop, font(rng.choice(BOLD), size))], ink)
    x = max(0, (canvas.width - layer.width) // 2 + rng.randint(-60, 60))
    paste(canvas, layer, (x, rng.randint(60, 400)), rng.uniform(-8, 8), board)
    return canvas.convert("RGB"), [shop]


def poster(rng: random.Random, index: int) -> tuple[Image.Image, list[str]]:
    """A poster: an event's name, a place and a date, on a plain or low-contrast ground."""
    event, place = rng.choice(EVENTS), rng.choice(PLACES)
    date = f"{rng.randint(1, 28)} {rng.choice(('June', 'July', 'August', 'October'))}"
    low = index % 3 == 0
    ground = (200, 200, 205) if low else rng.choice(((250, 240, 210), (20, 20, 30), (180, 30, 60)))
    ink = (140, 140, 150) if low else ((20, 20, 20) if sum(ground) > 450 else (250, 250, 250))
    canvas = Image.new("RGBA", (900, 1300), (*ground, 255))
    lines = [event, place, date]
    paste(canvas, text_block([(event, font(rng.choice(BOLD), 84))], ink), (60, 200), rng.uniform(-5, 5))
    paste(
        canvas,
        text_block([(place, font(rng.choice(SERIF), 60)), (date, font(rng.choice(SANS), 48))], ink),
        (70, 700),
    )
    return canvas.convert("RGB"), lines


MAKERS: tuple[tuple[str, Callable[[random.Random, int], tuple[Image.Image, list[str]]], int], ...] = (
    ("photo", photo_caption, 12),
    ("paper", receipt, 6),
    ("paper", letter, 6),
    ("screen", screen, 10),
    ("sign", sign, 10),
    ("poster", poster, 6),
)


def write_text_pictures(out: Path, seed: int = SEED) -> list[Sample]:
    """Render every picture with text into `out` (JPEG for photos and scans, PNG for screens); truth.json."""
    out.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    for kind, make, count in MAKERS:
        for index in range(count):
            rng = random.Random(f"{seed}-{make.__name__}-{index}")
            image, lines = make(rng, index)
            suffix = ".png" if kind in ("screen", "poster") else ".jpg"
            path = out / f"{make.__name__}-{index:02d}{suffix}"
            image.save(path, quality=rng.choice((70, 85, 92))) if suffix == ".jpg" else image.save(path)
            samples.append(Sample(path, kind, words_of(lines)))
    truth = {sample.path.name: {"kind": sample.kind, "words": list(sample.words)} for sample in samples}
    (out / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False))
    return samples


def text_free(cache_dir: Path) -> list[Sample]:
    """The pictures without text: scikit-image's photos (files of the package) and the tune-half stamps."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    samples = [Sample(next(folder.glob(f"{name}.*")), "photo-free", ()) for name in PHOTOS]
    stamps = fetch_stamps(cache_dir)
    for stamp in collect(stamps, None):
        if split_of(stamp.caption) == "tune" and stamp.path not in STAMPS_WITH_TEXT:
            samples.append(Sample(stamps / stamp.path, "stamp", ()))
    return samples


def samples(cache_dir: Path = BENCH_CACHE, seed: int = SEED) -> list[Sample]:
    """The whole dev set: pictures with text (rendered afresh) first, then the text-free ones."""
    return write_text_pictures(cache_dir / FOLDER / str(seed), seed) + text_free(cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dev set and say where it is."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    every = samples(args.cache_dir, args.seed)
    with_text = [sample for sample in every if sample.has_text]
    log.info(
        "%d pictures with text in %s, %d without",
        len(with_text),
        with_text[0].path.parent,
        len(every) - len(with_text),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
