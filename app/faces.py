"""Stage: the faces in a picture, found and described offline by dlib's models.

`FaceReader.read` runs three steps on the picture the faces stage has decoded (app/face_stage.py):

1. detection: dlib's HOG frontal-face detector on a grey copy whose long side is `detect_side` px
   (shrunk or enlarged to it; `upsample` doubles it inside the detector; grey costs a quarter less
   than colour and found the same faces on the dev set). Its window is 80 px, so it finds
   faces whose side is at least 80 / `detect_side` of the picture's long side: at the default 1024 px,
   a face of 40 px in a picture of 512 px, of 240–315 px in a 12 MP photo (4032 px). Detections scoring
   under `min_score` are dropped (dlib's own threshold is 0; lower ones are mostly not faces);
2. alignment: dlib's 5-point landmark model on each face found;
3. description: dlib's ResNet face descriptor (128 numbers; the same person's faces lie closer than
   about 0.6 in Euclidean distance, 99.38 % on LFW), without jittering.

The models are the files of the `face-recognition-models` package, read by path (its Python code
imports `pkg_resources` and is never imported). Boxes come back in the given picture's pixels.
A build stage makes one `FaceReader()` and hands it to its workers: it pickles as its settings
alone, so each process loads the models (about 30 MB) on its first `read`. Figures: docs/people.md.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from app.errors import ModelUnavailable

PACKAGE = "face-recognition-models"  # the package that carries the model files
PACKAGE_VERSION = "0.3.0"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
DESCRIBER = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_ID = "dlib HOG + 5-point + ResNet v1 (face-recognition-models 0.3.0)"
DIMENSION = 128  # numbers per descriptor
SAME_PERSON = 0.6  # dlib's threshold: descriptors of one person lie closer than this
WINDOW = 80  # the HOG detector's window: the smallest face it finds, in the detection copy's pixels
DECODE_SIDE = 720  # least short side pictures decode at (JPEGs at 1/2, 1/4, 1/8: 12 MP at 1008 px)


@dataclass(frozen=True)
class DetectParams:
    """Size and threshold of the detection pass (chosen on bench/faces.py; docs/people.md)."""

    detect_side: int = 1024  # long side of the copy the detector scans
    upsample: int = 0  # times the detector doubles that copy (each costs about 4×)
    min_score: float = 0.3  # lower scores are dropped (on the dev set: faces ≥ 0.69, others ≤ 0.21)


@dataclass(frozen=True)
class FoundFace:
    """One face found: box (x, y, width, height in the given picture's pixels), score, descriptor."""

    box: tuple[int, int, int, int]
    score: float
    descriptor: np.ndarray  # DIMENSION float32 numbers

    @property
    def size(self) -> int:
        """The box's larger side, in pixels."""
        return max(self.box[2], self.box[3])


class FaceReading(Protocol):
    """What finds and describes the faces in a picture (FaceReader; tests give fakes). Pickled to workers."""

    model_id: str

    @property
    def decode_side(self) -> int:
        """The least short side the stage decodes pictures at for it."""
        ...

    def read(self, image: Image.Image) -> list[FoundFace]:
        """The faces in the picture (detect + describe), best score first; empty when it holds none."""
        ...


def model_dir() -> Path:
    """The folder of dlib's model files inside the installed package (its Python code is never imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        models = Path(folder) / "models"
        if (models / LANDMARKS).is_file() and (models / DESCRIBER).is_file():
            return models
    raise ModelUnavailable(
        f"finding faces needs dlib's models of {PACKAGE} {PACKAGE_VERSION}: pip install "
        f"{PACKAGE}=={PACKAGE_VERSION} dlib-bin (scripts/setup.sh installs them)"
    )


def check_installed() -> Path:
    """dlib's model folder, once dlib itself and its models are known to be installed; ModelUnavailable
    otherwise (a build checks this before any work)."""
    if importlib.util.find_spec("dlib") is None:
        raise ModelUnavailable(
            "finding faces needs dlib: pip install dlib-bin (scripts/setup.sh installs it)"
        )
    return model_dir()


def _dlib() -> Any:
    """The dlib module (imported on first use: it is only needed by a build that finds faces)."""
    try:
        import dlib
    except ImportError as exc:
        raise ModelUnavailable(f"finding faces needs dlib: pip install dlib-bin ({exc})") from None
    return dlib


def _scaled(image: Image.Image, side: int) -> tuple[np.ndarray, float]:
    """The picture as RGB uint8 pixels with its long side at `side` (left as it is within 10 % of it), and
    the factor applied."""
    factor = side / max(image.size)
    if abs(factor - 1.0) <= 0.1:
        factor = 1.0
    else:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0 if factor < 0.5 else None)
    return np.asarray(image.convert("RGB")), factor


class FaceReader:
    """Finds faces with dlib's HOG detector, aligns them (5 points) and describes them (module docstring).

    Loaded lazily (`load`, or the first `read`); pickling keeps only the settings, so each process
    (DataLoader worker) loads its own models.
    """

    model_id = MODEL_ID

    def __init__(self, params: DetectParams | None = None) -> None:
        self.params = params or DetectParams()
        self._models: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()
        self.seconds = {"detect": 0.0, "describe": 0.0}  # summed over this process's reads

    @property
    def decode_side(self) -> int:
        """The short side pictures are decoded at: a 4:3 picture's long side then lies within 10 % of
        `detect_side` or above it (DECODE_SIDE up to 1024 px)."""
        return max(DECODE_SIDE, round(self.params.detect_side * 0.7))

    def __reduce__(self) -> tuple[type[FaceReader], tuple[DetectParams]]:
        """Only the settings travel to another process; it loads the models itself."""
        return (FaceReader, (self.params,))

    def load(self) -> tuple[Any, Any, Any]:
        """The detector, landmark model and describer, loaded once; ModelUnavailable when not installed."""
        with self._lock:
            if self._models is None:
                dlib, models = _dlib(), model_dir()
                self._models = (
                    dlib.get_frontal_face_detector(),
                    dlib.shape_predictor(str(models / LANDMARKS)),
                    dlib.face_recognition_model_v1(str(models / DESCRIBER)),
                )
            return self._models

    def detect(self, image: Image.Image) -> tuple[np.ndarray, list[tuple[Any, float]]]:
        """The detection copy and the faces found on it (dlib rectangles with their scores), best first."""
        detector = self.load()[0]
        pixels, _ = _scaled(image, self.params.detect_side)
        grey = np.asarray(Image.fromarray(pixels).convert("L"))  # HOG on grey: a quarter cheaper, as good
        boxes, scores, _ = detector.run(grey, self.params.upsample, self.params.min_score)
        found = sorted(zip(boxes, scores, strict=True), key=lambda pair: -pair[1])
        return pixels, [(box, float(score)) for box, score in found if score >= self.params.min_score]

    def describe(self, pixels: np.ndarray, box: Any) -> np.ndarray:
        """The 128-number descriptor of the face in `box` of `pixels` (aligned on its 5 landmarks)."""
        _, landmarks, describer = self.load()
        shape = landmarks(pixels, box)
        return np.asarray(describer.compute_face_descriptor(pixels, shape, 0), dtype=np.float32)

    def read(self, image: Image.Image) -> list[FoundFace]:
        """The faces in the picture, best score first, boxes in its own pixels (clipped to it)."""
        started = time.perf_counter()
        pixels, found = self.detect(image)
        detected = time.perf_counter()
        factor = pixels.shape[1] / image.width
        faces = []
        for box, score in found:
            descriptor = self.describe(pixels, box)
            left, top = max(0, box.left()), max(0, box.top())
            right, bottom = min(pixels.shape[1], box.right() + 1), min(pixels.shape[0], box.bottom() + 1)
            if right <= left or bottom <= top:
                continue
            x, y = round(left / factor), round(top / factor)
            width = min(image.width - x, round((right - left) / factor))
            height = min(image.height - y, round((bottom - top) / factor))
            faces.append(FoundFace((x, y, width, height), score, descriptor))
        self.seconds["detect"] += detected - started
        self.seconds["describe"] += time.perf_counter() - detected
        return faces


def distances(descriptors: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Euclidean distances between each row of `descriptors` and each row of `to` (n × m)."""
    a = np.asarray(descriptors, dtype=np.float32).reshape(-1, DIMENSION)
    b = np.asarray(to, dtype=np.float32).reshape(-1, DIMENSION)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    found: np.ndarray = np.sqrt(np.clip(squared, 0.0, None))
    return found
