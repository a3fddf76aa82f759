"""People from real photos of three people, through the product's own build (`imgsearch build --faces`).

The photos: the test pictures of the `face_recognition` 1.3.0 source distribution (MIT; fetched once
from PyPI with `pip download`, kept in the bench cache, never committed): five of Barack Obama (two of
them partial faces; `32bit.png`, the same photo as `obama2.jpg`, is left out) and one of Joe Biden,
and scikit-image's astronaut (Eileen Collins). Each photo is also indexed mirrored, at half size and
darkened (`--variants`), under opaque names, so that every person has several photos and the grouping
has something to group. The build runs as a user runs it (a subprocess of the CLI), then the people
are read through `app.people.open_people`.

Reported: `detected`, the share of photos in which the person's face is found (one face per photo);
`pair_precision` / `pair_recall` over the pairs of detected faces (same person found = same person
known); `people`, the people listed against the 3 known; `within_max` / `between_min`, the largest
descriptor distance between two faces of one person and the smallest between two people (dlib's
threshold 0.6; app/people.py joins at `JOIN`).

    .venv/bin/python -m bench.faces_people
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from app.faces import distances
from app.layout import MANIFEST, live_path
from app.people import JOIN, open_people
from scripts.tuxpaint import BENCH_CACHE

SDIST = "face_recognition-1.3.0.tar.gz"
PHOTOS = {  # file in the sdist's tests/test_images → the person it shows
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "obama_partial_face2.jpg": "obama",
    "biden.jpg": "biden",
}


def fetch(cache: Path) -> Path:
    """The sdist's test_images folder, downloaded and unpacked on first use."""
    folder = cache / "face_recognition-1.3.0" / "tests" / "test_images"
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / SDIST).is_file():
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        subprocess.run([*pip, "face_recognition==1.3.0", "-d", str(cache)], check=True)
    with tarfile.open(cache / SDIST) as archive:
        members = [m for m in archive.getmembers() if "/tests/test_images/" in m.name and m.isfile()]
        archive.extractall(cache, members=members, filter="data")
    return folder


def photos(folder: Path) -> list[tuple[str, Image.Image]]:
    """(person, picture) of every photo of the set, before variants."""
    from bench.faces import _skimage

    found = [(person, Image.open(folder / name).convert("RGB")) for name, person in PHOTOS.items()]
    return [*found, ("collins", _skimage("astronaut"))]


def variants(image: Image.Image, more: bool) -> list[Image.Image]:
    """The photo, and when asked mirrored, at half size and darkened."""
    if not more:
        return [image]
    half = image.resize((image.width // 2, image.height // 2))
    return [image, ImageOps.mirror(image), half, ImageEnhance.Brightness(image).enhance(0.5)]


def write_set(folder: Path, target: Path, more: bool) -> dict[str, str]:
    """Write the set under opaque names; the person of each file name."""
    target.mkdir(parents=True)
    truth: dict[str, str] = {}
    count = itertools.count(1)
    for person, image in photos(folder):
        for variant in variants(image, more):
            name = f"IMG_{next(count):04d}.jpg"
            variant.save(target / name, quality=90)
            truth[name] = person
    return truth


def read_people(index_dir: Path, truth: dict[str, str]) -> tuple[list[tuple[str, str | None]], np.ndarray]:
    """(known person, person found) per detected face, and the faces' descriptors, from the index."""
    import sqlite3
    from contextlib import closing

    generation = live_path(index_dir)
    view = open_people(index_dir, generation)
    assert view is not None, "the build stored no faces"
    with closing(sqlite3.connect(generation / MANIFEST)) as connection:
        sources = dict(connection.execute("SELECT id, source FROM images").fetchall())
        rows = connection.execute("SELECT face, id, descriptor FROM faces ORDER BY face").fetchall()
    pairs = [(truth[sources[image_id]], view.face(int(face)).person) for face, image_id, _ in rows]
    vectors = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows])
    return pairs, vectors


def pair_scores(pairs: list[tuple[str, str | None]]) -> tuple[float, float]:
    """Pairwise precision and recall of the people found against the people known."""
    same_found = same_known = both = 0
    for (known_a, found_a), (known_b, found_b) in itertools.combinations(pairs, 2):
        found = found_a is not None and found_a == found_b
        known = known_a == known_b
        same_found += found
        same_known += known
        both += found and known
    return (both / same_found if same_found else 1.0), (both / same_known if same_known else 1.0)


def spread(pairs: list[tuple[str, str | None]], vectors: np.ndarray) -> tuple[float, float]:
    """The largest distance within one person and the smallest between two people."""
    far = distances(vectors, vectors)
    known = np.array([known for known, _ in pairs])
    same = known[:, None] == known[None, :]
    return float(far[same].max()), float(far[~same].min())


def main(argv: list[str] | None = None) -> int:
    """Build the set with --faces and print the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--no-variants", action="store_true", help="the photos alone, one each")
    args = parser.parse_args(argv)
    folder = fetch(args.cache_dir)
    with tempfile.TemporaryDirectory() as work:
        images, index_dir = Path(work) / "photos", Path(work) / "index"
        truth = write_set(folder, images, not args.no_variants)
        command = [sys.executable, "-m", "app.cli", "build", "--images", str(images)]
        subprocess.run([*command, "--index-dir", str(index_dir), "--faces", "--no-ocr"], check=True)
        pairs, vectors = read_people(index_dir, truth)
        assert len(pairs) == len(vectors)
        found = {person for _, person in pairs if person is not None}
    detected = len(pairs) / len(truth)
    precision, recall = pair_scores(pairs)
    within, between = spread(pairs, vectors)
    print(
        f"RESULT faces-people photos={len(truth)} faces={len(pairs)} detected={detected:.3f} "
        f"people={len(found)} known=3 pair_precision={precision:.3f} pair_recall={recall:.3f} "
        f"within_max={within:.3f} between_min={between:.3f} join={JOIN}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
