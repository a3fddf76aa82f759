"""Assemble the offline demo gallery: scikit-image's photos plus Tux Paint's captioned stamps (Debian)."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.tuxpaint import collect, fetch_stamps, stage

log = logging.getLogger("demo_gallery")

PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "horse",
    "camera",
    "motorcycle_left",
    "hubble_deep_field",
)


def save_photos(target: Path) -> int:
    """Write scikit-image's bundled photos as JPEG files into target/photos."""
    from skimage import data

    folder = target / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        array = np.asarray(loader())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        Image.fromarray(array).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    return len(list(folder.glob("*.jpg")))


def copy_stamps(cache: Path, target: Path) -> int:
    """Copy the captioned stamps into target/stamps, keeping their folders; 0 when apt cannot get them."""
    try:
        stamps = fetch_stamps(cache / "bench")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        log.warning("no Tux Paint stamps (%s); continuing with the photos only", exc)
        return 0
    selected = collect(stamps, None)
    stage(stamps, selected, target / "stamps")
    return len(selected)


def main(argv: list[str] | None = None) -> int:
    """Fill the gallery folder; exit 0 when at least the photos are there."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/gallery"))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "imgsearch")
    parser.add_argument("--no-stamps", action="store_true", help="photos only (no apt-get)")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    photos = save_photos(args.out)
    stamps = 0
    if not args.no_stamps:
        stamps = copy_stamps(args.cache_dir, args.out)
    log.info("demo gallery in %s: %d photos, %d stamps", args.out, photos, stamps)
    return 0 if photos else 1


if __name__ == "__main__":
    sys.exit(main())
