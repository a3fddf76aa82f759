"""The faces stage on a dev set made offline (app/faces.py, app/face_stage.py, app/people.py).

The set, all from scikit-image's bundled pictures (nothing downloaded):

- faces: scikit-image's astronaut (one face, Eileen Collins) scaled (faces of 31 to 360 px), mirrored,
  cropped, darkened, brightened, in low contrast, in grey, as a JPEG of quality 15, blurred, and
  pasted small into a 12 MP photo (faces of 60 to 480 px in a 4032 px picture). Her face's reference
  box is the HOG detector's own on the original (176, 77, 90, 90): a detection matches it when
  their intersection over union is ≥ 0.4;
- face-free: 14 of scikit-image's other photos (coffee, a cat, a rocket, coins, a page …) and a
  12 MP photo made from the coffee;
- other people, for grouping only: the cameraman and the 100 faces of scikit-image's `lfw_subset`
  (25 × 25 px, enlarged), taken as 101 people other than the astronaut (LFW's subset may repeat a
  person; a repeat would count against precision).

What it measures: `recall_ge40`, the share of the astronaut's faces of ≥ 40 px that are found (in
pictures up to 2048 px, `small_recall`, and in the 12 MP photo, `photo_recall`, apart); `false_faces`,
detections that match no face; `pair_precision` / `pair_recall` of the grouping (app/people.py's
DBSCAN at `JOIN`) over the pairs of all faces described, strangers included, and `*_ge40` over the
astronaut's and the cameraman's faces alone (faces the stage would describe); `nearest_stranger`, the
smallest distance from one of her faces to a stranger's; `noface_*` / `oneface_*`, the stage's cost
per 12 MP JPEG (read, hash, decode, detect, describe): wall and CPU ms in one process on one thread
(the CPU figure is what a photo costs on an idle core; `decode_cpu_ms`, the decoding part), and
`noface_2workers_ms`, wall ms per photo through two worker processes (a build's two workers; on a
loaded machine this is the load's figure).
What it cannot measure: with one identity seen in many conditions, 25 px strangers and a cameraman,
the pair figures say that variants of one face stay together and apart from strangers; they say
nothing about telling apart two similar adults in real photos (dlib's LFW figure, 99.38 %, is the
reference for that). The 25 px strangers are far below what the stage describes (faces ≥ 40 px): they
lie closer together than real faces do, so `pair_precision` is a worst case.

    .venv/bin/python -m bench.faces                       # the default detection size (1024 px)
    .venv/bin/python -m bench.faces --side 512 --side 640 --side 768 --side 1024
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from app.derived_stage import Pending
from app.face_stage import read_one
from app.faces import DECODE_SIDE, DetectParams, FaceReader, FoundFace, distances
from app.people import JOIN, _clusters
from app.preprocessing import decode_sized

REFERENCE = (176, 77, 90, 90)  # the astronaut's face in her 512 px picture (the HOG detector's box)
PHOTO = (4032, 3024)  # a 12 MP phone photo
MATCH_IOU = 0.4

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Case:
    """A picture of the set, the astronaut's face box in it (None: face-free) and its group."""

    name: str
    image: Image.Image
    face: Box | None
    group: str  # small (≤ 512 px), photo (12 MP), free


def _skimage(name: str) -> Image.Image:
    """One of scikit-image's bundled pictures, in RGB."""
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def _scaled_box(box: Box, factor: float, offset: tuple[int, int] = (0, 0)) -> Box:
    """A box scaled by `factor` then moved by `offset`."""
    return (
        round(box[0] * factor) + offset[0],
        round(box[1] * factor) + offset[1],
        round(box[2] * factor),
        round(box[3] * factor),
    )


def _lighting() -> dict[str, Callable[[Image.Image], Image.Image]]:
    """Changes of light and quality that keep the face where it is."""

    def jpeg(image: Image.Image) -> Image.Image:
        path = Path(tempfile.mkdtemp()) / "low.jpg"
        image.save(path, quality=15)
        return Image.open(path).convert("RGB")

    return {
        "dark": lambda image: ImageEnhance.Brightness(image).enhance(0.45),
        "bright": lambda image: ImageEnhance.Brightness(image).enhance(1.5),
        "low_contrast": lambda image: ImageEnhance.Contrast(image).enhance(0.5),
        "grey": lambda image: ImageOps.grayscale(image).convert("RGB"),
        "jpeg15": jpeg,
        "blur": lambda image: image.filter(ImageFilter.GaussianBlur(1.5)),
    }


def small_cases() -> list[Case]:
    """The astronaut in pictures up to 2048 px: scaled, mirrored, cropped, in other light."""
    astronaut = _skimage("astronaut")
    cases = []
    for factor in (0.35, 0.45, 0.6, 0.8, 1.0, 1.5, 2.5, 4.0):
        size = (round(512 * factor), round(512 * factor))
        cases.append(Case(f"scale{factor}", astronaut.resize(size), _scaled_box(REFERENCE, factor), "small"))
    mirrored = (512 - REFERENCE[0] - REFERENCE[2], *REFERENCE[1:])
    cases.append(Case("mirror", ImageOps.mirror(astronaut), (mirrored[0], *mirrored[1:]), "small"))
    face_only = astronaut.crop((116, 17, 326, 227))
    cases.append(Case("crop_face", face_only, _scaled_box(REFERENCE, 1, (-116, -17)), "small"))
    cases.append(Case("crop_top", astronaut.crop((0, 0, 512, 256)), REFERENCE, "small"))
    for name, change in _lighting().items():
        cases.append(Case(name, change(astronaut), REFERENCE, "small"))
    small = astronaut.resize((307, 307))
    dark_mirror = ImageOps.mirror(ImageEnhance.Brightness(small).enhance(0.5))
    box = _scaled_box(REFERENCE, 0.6)
    cases.append(Case("mirror_dark_0.6", dark_mirror, (307 - box[0] - box[2], *box[1:]), "small"))
    return cases


def photo_cases() -> list[Case]:
    """The astronaut pasted into a 12 MP photo, her face 60 to 480 px wide."""
    background = _skimage("coffee").resize(PHOTO)
    astronaut = _skimage("astronaut")
    cases = []
    for face in (60, 120, 240, 480):
        factor = face / REFERENCE[2]
        pasted = astronaut.resize((round(512 * factor), round(512 * factor)))
        photo = background.copy()
        photo.paste(pasted, (1200, 400))
        cases.append(Case(f"photo_face{face}", photo, _scaled_box(REFERENCE, factor, (1200, 400)), "photo"))
    return cases


def free_cases() -> list[Case]:
    """Pictures without a face."""
    names = ["coffee", "chelsea", "rocket", "coins", "horse", "page", "text", "moon", "brick", "grass"]
    names += ["gravel", "hubble_deep_field", "immunohistochemistry", "retina"]
    cases = [Case(name, _skimage(name), None, "free") for name in names]
    cases.append(Case("photo_free", _skimage("coffee").resize(PHOTO), None, "free"))
    return cases


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def detect_all(reader: FaceReader, cases: Sequence[Case]) -> tuple[dict[str, bool], int, list[np.ndarray]]:
    """Whether each face case's face was found, the detections matching no face, and the astronaut's
    descriptors found."""
    found, false_faces, descriptors = {}, 0, []
    for case in cases:
        faces: list[FoundFace] = reader.read(case.image)
        hits = [face for face in faces if case.face is not None and iou(face.box, case.face) >= MATCH_IOU]
        false_faces += len(faces) - len(hits[:1])
        if case.face is not None:
            found[case.name] = bool(hits)
            descriptors += [hits[0].descriptor] if hits else []
    return found, false_faces, descriptors


def strangers(reader: FaceReader) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Descriptors of the cameraman (when his face is found) and of lfw_subset's 100 faces (enlarged)."""
    import dlib
    from skimage import data

    cameraman = [face.descriptor for face in reader.read(_skimage("camera"))[:1]]
    found = []
    for face in data.lfw_subset()[:100]:  # type: ignore[no-untyped-call]
        picture = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((200, 200))
        pixels = np.asarray(picture)
        box = dlib.rectangle(20, 20, 180, 180)  # the subset is cropped to the face
        found.append(reader.describe(pixels, box))
    return cameraman, found


def pairs(vectors: np.ndarray, labels: list[int]) -> tuple[float, float]:
    """Pairwise precision and recall of the grouping (DBSCAN at JOIN) against `labels`."""
    groups = _clusters(vectors)
    cluster = np.full(len(vectors), -1)
    for number, rows in enumerate(groups):
        cluster[rows] = number
    same_true = np.equal.outer(labels, labels)
    same_found = np.equal.outer(cluster, cluster) & (cluster[:, None] >= 0)
    upper = np.triu(np.ones_like(same_true), 1).astype(bool)
    together = (same_found & upper).sum()
    right = (same_found & same_true & upper).sum()
    return (right / together if together else 1.0), right / max(1, (same_true & upper).sum())


_READERS: dict[int, FaceReader] = {}  # one loaded reader per detection size in each process


def _timed(path: Path, side: int) -> tuple[float, float]:
    """Wall and CPU seconds the stage spends on one photo in this process (its reader loaded before)."""
    reader = _READERS.setdefault(side, FaceReader(DetectParams(detect_side=side)))
    pending = Pending(0, "x", hashlib.sha256(path.read_bytes()).hexdigest(), path)
    read_one(pending, reader, 200_000_000)  # the models load, the file is cached
    wall, cpu = time.perf_counter(), time.thread_time()
    read_one(pending, reader, 200_000_000)
    return time.perf_counter() - wall, time.thread_time() - cpu


def cost(side: int, folder: Path) -> dict[str, float]:
    """Milliseconds per 12 MP JPEG without a face and with one: wall and CPU (median of 5, one process,
    one thread), and wall per photo through two worker processes as a build runs them."""
    free, face = folder / "free.jpg", folder / "face.jpg"
    if not free.exists():
        free_cases()[-1].image.save(free, quality=90)
        photo_cases()[-1].image.save(face, quality=90)
    timed: dict[str, float] = {}
    for name, path in (("noface", free), ("oneface", face)):
        runs = [_timed(path, side) for _ in range(5)]
        timed[f"{name}_ms"] = 1000 * statistics.median(wall for wall, _ in runs)
        timed[f"{name}_cpu_ms"] = 1000 * statistics.median(cpu for _, cpu in runs)
    raw, decoding = free.read_bytes(), []
    for _ in range(5):
        cpu = time.thread_time()
        decode_sized(raw, 200_000_000, DECODE_SIDE)
        decoding.append(time.thread_time() - cpu)
    timed["decode_cpu_ms"] = 1000 * statistics.median(decoding)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_timed, [free] * 2, [side] * 2))  # each process loads its reader
        started = time.perf_counter()
        list(pool.map(_timed, [free] * 8, [side] * 8))
        timed["noface_2workers_ms"] = 1000 * (time.perf_counter() - started) / 16  # two reads per call
    return timed


def run(side: int, folder: Path) -> str:
    """Measure one detection size; the RESULT line."""
    import os

    reader = FaceReader(DetectParams(detect_side=side))
    small, photos, free = small_cases(), photo_cases(), free_cases()
    found, false_faces, descriptors = detect_all(reader, [*small, *photos, *free])
    sizes = {case.name: case.face[2] for case in (*small, *photos) if case.face is not None}
    big = [name for name in sizes if sizes[name] >= 40]
    missed = sorted(name for name in big if not found[name])
    recall = sum(found[name] for name in big) / len(big)
    small_recall = statistics.mean(found[c.name] for c in small if sizes[c.name] >= 40)
    photo_recall = statistics.mean(found[c.name] for c in photos)
    cameraman, lfw = strangers(reader)
    others = cameraman + lfw
    vectors = np.array([*descriptors, *others], dtype=np.float32)
    precision, pair_recall = pairs(vectors, [0] * len(descriptors) + list(range(1, len(others) + 1)))
    own = pairs(
        np.array(descriptors + cameraman, dtype=np.float32), [0] * len(descriptors) + [1] * len(cameraman)
    )
    apart = float(distances(np.array(descriptors), np.array(others)).min())
    timed = cost(side, folder)
    print(f"side {side}: missed {missed or 'none'}; load {os.getloadavg()[0]:.2f}")
    return (
        f"RESULT faces side={side} recall_ge40={recall:.3f} ({sum(found[n] for n in big)}/{len(big)}) "
        f"small_recall={small_recall:.3f} photo_recall={photo_recall:.3f} false_faces={false_faces} "
        f"pair_precision={precision:.3f} pair_recall={pair_recall:.3f} "
        f"cameraman_found={len(cameraman)} pair_precision_ge40={own[0]:.3f} pair_recall_ge40={own[1]:.3f} "
        f"nearest_stranger={apart:.3f} "
        f"join={JOIN} noface_ms={timed['noface_ms']:.0f} noface_cpu_ms={timed['noface_cpu_ms']:.0f} "
        f"oneface_ms={timed['oneface_ms']:.0f} oneface_cpu_ms={timed['oneface_cpu_ms']:.0f} "
        f"decode_cpu_ms={timed['decode_cpu_ms']:.0f} noface_2workers_ms={timed['noface_2workers_ms']:.0f} "
        f"load={os.getloadavg()[0]:.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print one RESULT line per detection size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--side", type=int, action="append", help="detection size(s) (default: 1024)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for side in args.side or [DetectParams().detect_side]:
            print(run(side, Path(folder)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
