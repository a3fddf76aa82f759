"""Make the bridge's reference set: captioned clip art and emoji from Debian packages, encoded once.

    python -m scripts.references [--profile packaged] [--dim 128]

writes app/data/references-clipart-<image model>.npz (see app/references.py). Sources, all offline
through apt-get: Open Clip Art Library 0.18 (`openclipart-png`, titles from `openclipart-svg`;
public domain), EmojiOne (`ruby-gemojione`; CC BY-SA 4.0), emojify.js (`libjs-emojify`; Expat), and
Noto Color Emoji (`fonts-noto-color-emoji`; OFL) drawn with its CLDR names (`unicode-cldr-core`).
Pictures that look like a Tux Paint stamp (the relevance benchmark's gallery) are left out.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.index import Index
from app.pca import Pca
from app.pipeline import Pipeline
from app.references import DEFAULT_SET, ReferenceSet, reference_path
from app.registry import make_bridge, prepare
from app.settings import Settings
from app.sources import FolderSource
from scripts.tuxpaint import BENCH_CACHE, fetch_package, fetch_stamps

log = logging.getLogger("scripts.references")

OPENCLIPART = Path("usr/share/openclipart")
SKIPPED_FOLDERS = ("shapes", "special")  # arrows, stars, patterns, gradients: no object to name
GEMOJIONE = Path("usr/share/rubygems-integration/all/gems/gemojione-3.3.0")
EMOJIFY = Path("usr/share/javascript/emojify.js/images/emoji")
NOTO_FONT = Path("usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR = Path("usr/share/unicode/cldr/common")
SKIN_TONES = range(0x1F3FB, 0x1F400)
BENCHMARK_LOOKALIKE = 0.85  # cosine of unit features above which a picture counts as a Tux Paint stamp

Captioned = list[tuple[Path, str]]


def openclipart(cache: Path) -> Captioned:
    """Open Clip Art PNGs with the title of their SVG twin."""
    pngs, svgs = fetch_package("openclipart-png", cache), fetch_package("openclipart-svg", cache)
    found: Captioned = []
    root = pngs / OPENCLIPART / "png"
    for png in sorted(root.rglob("*.png")):
        relative = png.relative_to(root)
        svg = (svgs / OPENCLIPART / "svg" / relative).with_suffix(".svg")
        if relative.parts[0] in SKIPPED_FOLDERS or not svg.is_file():
            continue
        match = re.search(r"<dc:title>([^<]*)</dc:title>", svg.read_text(errors="replace"))
        title = html.unescape(match.group(1)) if match else ""
        title = re.sub(r"^clipart by [^-]*- *", "", title.strip(), flags=re.IGNORECASE).strip()
        if title:
            found.append((png, title))
    return found


def gemojione(cache: Path) -> Captioned:
    """EmojiOne pictures with their Unicode names."""
    root = fetch_package("ruby-gemojione", cache) / GEMOJIONE
    entries = json.loads((root / "config" / "index.json").read_text())
    found: Captioned = []
    for entry in entries.values():
        png = root / "assets" / "png" / f"{entry['unicode'].upper()}.png"
        if png.is_file() and entry.get("name"):
            found.append((png, str(entry["name"])))
    return found


def emojify(cache: Path) -> Captioned:
    """emojify.js pictures named by their short codes ('bridge_at_night')."""
    root = fetch_package("libjs-emojify", cache) / EMOJIFY
    return [(png, png.stem.replace("_", " ")) for png in sorted(root.glob("*.png"))]


def noto(cache: Path, folder: Path) -> Captioned:
    """Noto Color Emoji drawn into `folder`, captioned with CLDR's English names (no skin-tone variants)."""
    font_file = fetch_package("fonts-noto-color-emoji", cache) / NOTO_FONT
    cldr = fetch_package("unicode-cldr-core", cache) / CLDR
    names: dict[str, str] = {}
    for xml in (cldr / "annotations" / "en.xml", cldr / "annotationsDerived" / "en.xml"):
        pattern = r'<annotation cp="([^"]+)" type="tts">([^<]+)</annotation>'
        for code, name in re.findall(pattern, xml.read_text()):
            emoji = html.unescape(code)
            if not any(ord(ch) in SKIN_TONES for ch in emoji):
                names.setdefault(emoji, html.unescape(name))
    font = ImageFont.truetype(str(font_file), 109)  # the size its bitmaps are drawn at
    folder.mkdir(parents=True, exist_ok=True)
    found: Captioned = []
    for number, (emoji, name) in enumerate(sorted(names.items())):
        canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((80, 80), emoji, font=font, embedded_color=True, anchor="mm")
        box = canvas.getbbox()
        colours = canvas.crop(box).convert("RGB").getcolors(1 << 16) if box else None
        if not colours or len(colours) < 8:  # nothing drawn, or the font's blank box
            continue
        png = folder / f"noto-{number:05d}.png"
        canvas.crop(box).save(png)
        found.append((png, name))
    return found


def encode(pictures: Captioned, pipeline: Pipeline, scratch: Path) -> tuple[np.ndarray, list[str]]:
    """Unit features (flip-averaged, as the build stores them) and captions, through the build path."""
    folder = scratch / "pictures"
    folder.mkdir(parents=True)
    for number, (png, _) in enumerate(pictures):
        (folder / f"{number:06d}.png").symlink_to(png.resolve())
    index_dir = scratch / "index"
    build_index(
        FolderSource(folder), index_dir, pipeline, BuildConfig(pca_dim=0), progress=sys.stderr.isatty()
    )
    index = Index(index_dir)
    try:
        records = index.records(list(range(index.count)))
        captions = [pictures[int(Path(r.source).stem)][1] for r in records]
        return np.asarray(index.features, dtype=np.float32), captions
    finally:
        index.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="packaged", help="whose image encoder to use (not clip)")
    parser.add_argument("--dim", type=int, default=128, help="PCA dimension of the stored features")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE, help="where the packages are unpacked")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: app/data/…)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch, encode, drop benchmark look-alikes, compress and write the reference set."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    cache = args.cache_dir.expanduser()
    settings = Settings()
    models = prepare(settings, args.profile, with_lm=False)
    if models.image.labels is None:
        log.error("profile %s has a joint image-text space: it needs no reference set", args.profile)
        return 1
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(references=""), settings.cache_dir))
    with tempfile.TemporaryDirectory(prefix="references-") as scratch:
        root = Path(scratch)
        pictures = openclipart(cache) + gemojione(cache) + emojify(cache) + noto(cache, root / "noto")
        log.info("%d captioned pictures; reading took %.0f s", len(pictures), time.perf_counter() - started)
        features, captions = encode(pictures, pipeline, root / "references")
        stamps = [(path, "") for path in sorted(fetch_stamps(cache).rglob("*.png"))]
        benchmark, _ = encode(stamps, pipeline, root / "benchmark")
    kept = (features @ benchmark.T).max(axis=1) <= BENCHMARK_LOOKALIKE
    log.info("left out %d pictures that look like Tux Paint stamps", int((~kept).sum()))
    features, captions = features[kept], [c for c, k in zip(captions, kept, strict=True) if k]
    pca = Pca.fit(features, args.dim, centred=True)
    distinct = sorted(set(captions))
    position = {caption: i for i, caption in enumerate(distinct)}
    references = ReferenceSet(
        name=DEFAULT_SET,
        model_id=models.image.model_id,
        captions=distinct,
        caption_of=np.array([position[c] for c in captions], dtype=np.int64),
        features=pca.transform(features).astype(np.float16),
        pca=pca,
    )
    out = args.out or reference_path(DEFAULT_SET, models.image.model_id)
    references.save(out)
    print(
        f"wrote {out}: {len(references)} pictures, {len(distinct)} captions, {args.dim}-d, "
        f"{out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
