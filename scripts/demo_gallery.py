"""Assemble the offline demo gallery: scikit-image's photos plus Tux Paint's captioned stamps (Debian)."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

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
STAMPS_PACKAGE = "tuxpaint-stamps-default"
STAMPS_ROOT = Path("usr/share/tuxpaint/stamps")


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


def unpack_stamps(cache: Path) -> Path | None:
    """Download and unpack the Tux Paint stamps package once into `cache`; None when apt cannot get it."""
    root = cache / "tuxpaint" / STAMPS_ROOT
    if root.is_dir():
        return root
    work = Path(tempfile.mkdtemp(dir=cache))
    try:
        download = ["apt-get", "download", STAMPS_PACKAGE]
        if subprocess.run(download, cwd=work, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            if subprocess.run(download, cwd=work, capture_output=True).returncode != 0:
                log.warning("could not download %s with apt-get; continuing without stamps", STAMPS_PACKAGE)
                return None
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "tuxpaint")], check=True)
        return root
    except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
        log.warning("could not unpack %s (%s); continuing without stamps", STAMPS_PACKAGE, exc)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stamp_captions(root: Path) -> dict[Path, str]:
    """Each non-`symbols/` stamp PNG with a caption file → its caption (line 1 of NAME.txt)."""
    captions: dict[Path, str] = {}
    for png in sorted(root.rglob("*.png")):
        relative = png.relative_to(root)
        text = png.with_suffix(".txt")
        if relative.parts[0] == "symbols" or not text.is_file():
            continue
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines and lines[0].strip():
            captions[relative] = lines[0].strip()
    return captions


def copy_stamps(root: Path, target: Path) -> int:
    """Copy the captioned stamps (PNG + caption) into target/stamps, keeping their folders."""
    count = 0
    for relative in stamp_captions(root):
        destination = target / "stamps" / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, destination)
        count += 1
    return count


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
        root = unpack_stamps(args.cache_dir)
        stamps = copy_stamps(root, args.out) if root else 0
    log.info("demo gallery in %s: %d photos, %d stamps", args.out, photos, stamps)
    return 0 if photos else 1


if __name__ == "__main__":
    sys.exit(main())
