"""Stage: the text in a picture (OCR), read offline by PP-OCRv4's detection and recognition networks.

The networks are the ONNX files shipped inside the `rapidocr-onnxruntime` wheel (installed without
its own dependencies: its Python code is not used, its `opencv-python` would need libGL); they run
here in ONNX Runtime on the picture the build has already decoded, with OpenCV's headless build for
the geometry. `TextReader.read` runs three steps:

1. the gate: the detection network on the picture shrunk to `gate_side` px. Most photos hold no
   text and cost only this pass (a few ms on one core);
2. detection at `read_side` px, which finds each line of text as a rotated box;
3. recognition of each line (CTC over PP-OCRv4's Chinese + Latin alphabet), then noise filtering:
   lines under `min_confidence`, or with fewer than two letters or digits, are dropped.

The result (`ImageText`) holds the lines in reading order with their boxes and confidences; its
`text` (lines of one row joined by spaces, rows by newlines) is what a lexical index takes.

A build stage makes one `TextReader(threads=1)` and hands it to its workers: it pickles as its
settings alone, so each process loads its own sessions on its first `read` (1–3 s, about 130 MB). A
worker calls `read` on the picture it has already decoded (`app.preprocessing.decode`'s working copy)
and keeps `text` and `lines`. On one core: about 15 ms for a picture without text (the gate alone),
0.3 s for one with text (docs/relevance.md, "OCR").
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.errors import ModelUnavailable

log = logging.getLogger(__name__)

cv2: Any = importlib.import_module("cv2")  # OpenCV's own typing differs between releases

PACKAGE = "rapidocr-onnxruntime"  # the wheel that carries the networks
PACKAGE_VERSION = "1.4.4"
DETECTOR = "ch_PP-OCRv4_det_infer.onnx"
RECOGNISER = "ch_PP-OCRv4_rec_infer.onnx"
MODEL_ID = "PP-OCRv4 (det + rec, rapidocr-onnxruntime 1.4.4)"
MIN_SIDE = 8  # pictures smaller than this (either side) hold no readable text
MAX_SIDE = 2048  # larger pictures are shrunk to this first (crops for recognition come from this copy)
LINE_HEIGHT = 48  # the recogniser's input height
MAX_LINE_RATIO = 25  # a line is cut to 25 × its height (longer lines are rare; tensors stay small)


@dataclass(frozen=True)
class ReaderParams:
    """Sizes and thresholds of the three steps (defaults chosen on the OCR dev set, bench/ocr.py)."""

    gate_side: int = 256  # longest side of the gate's detection pass (a multiple of 32)
    read_side: int = 736  # longest side of the detection pass whose lines are read
    map_threshold: float = 0.3  # a pixel of the detection map is text above this
    box_threshold: float = 0.5  # a box is kept when its mean map score is above this
    gate_threshold: float = 0.5  # the gate opens for a box scoring above this
    unclip: float = 1.6  # a box grows by area × unclip / perimeter on each side
    min_confidence: float = 0.8  # lines read with a lower mean character probability are noise
    batch: int = 6  # lines per recognition run


@dataclass(frozen=True)
class TextLine:
    """One line read: its text, mean character probability and box (four corners, clockwise from
    top-left, as fractions of the picture's width and height)."""

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...]

    @property
    def top(self) -> float:
        """The box's highest point."""
        return min(y for _, y in self.box)

    @property
    def bottom(self) -> float:
        """The box's lowest point."""
        return max(y for _, y in self.box)

    @property
    def left(self) -> float:
        """The box's leftmost point."""
        return min(x for x, _ in self.box)


@dataclass(frozen=True)
class ImageText:
    """The text of one picture: its lines in reading order (none when it holds no text)."""

    lines: tuple[TextLine, ...] = ()
    gated: bool = False  # whether the gate saw text (the lines may still all be noise)

    @property
    def text(self) -> str:
        """What to index: the lines of each row joined by spaces, rows by newlines."""
        return "\n".join(" ".join(line.text for line in row) for row in rows(self.lines))

    def __bool__(self) -> bool:
        return bool(self.lines)


def rows(lines: tuple[TextLine, ...]) -> list[list[TextLine]]:
    """Lines grouped into rows (vertical overlap of half the shorter line), each row left to right."""
    grouped: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda line: (line.top + line.bottom) / 2):
        if grouped:
            last = grouped[-1][-1]
            overlap = min(last.bottom, line.bottom) - max(last.top, line.top)
            shorter = min(last.bottom - last.top, line.bottom - line.top)
            if overlap > shorter / 2:
                grouped[-1].append(line)
                continue
        grouped.append([line])
    return [sorted(row, key=lambda line: line.left) for row in grouped]


def model_dir() -> Path:
    """The folder of the networks inside the installed wheel (its Python code is never imported)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        models = Path(folder) / "models"
        if (models / DETECTOR).is_file() and (models / RECOGNISER).is_file():
            return models
    raise ModelUnavailable(
        f"reading text in pictures needs the PP-OCRv4 networks of {PACKAGE} {PACKAGE_VERSION}: "
        f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} (scripts/setup.sh installs it)"
    )


def _session(path: Path, threads: int, device: str) -> Any:
    """An ONNX Runtime session on `threads` intra-op threads, without busy-waiting between operators."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def _characters(session: Any) -> list[str]:
    """The recogniser's alphabet (kept in the ONNX file): CTC blank, the characters, then a space."""
    characters = session.get_modelmeta().custom_metadata_map.get("character", "")
    return ["", *characters.splitlines(), " "]


def rgb_array(image: Image.Image, max_side: int = MAX_SIDE) -> np.ndarray | None:
    """The picture as an (H, W, 3) uint8 RGB array (transparency on white, at most `max_side`); None
    when it is too small to hold text."""
    if min(image.size) < MIN_SIDE:
        return None
    if max(image.size) > max_side:
        factor = max(image.size) / max_side
        image = image.reduce(math.ceil(factor)) if factor >= 2 else image
        image = image.resize(_fitted(image.size, max_side), Image.Resampling.BILINEAR)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode != "RGB" and ("A" in image.getbands() or "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _fitted(size: tuple[int, int], side: int) -> tuple[int, int]:
    """`size` scaled so that its longest side is `side` (at least 1 px each)."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def detector_input(rgb: np.ndarray, side: int) -> np.ndarray:
    """A (1, 3, h, w) float32 BGR tensor in [-1, 1], longest side at most `side`, both sides multiples
    of 32 (the network's stride)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    size = (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    tensor = resized[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])


def _ordered(points: np.ndarray) -> np.ndarray:
    """Four corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0])]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1])]
    top_right, bottom_right = right[np.argsort(right[:, 1])]
    return np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)


def _box_score(probability: np.ndarray, corners: np.ndarray) -> float:
    """Mean detection probability inside a box."""
    height, width = probability.shape
    low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [width - 1, height - 1])
    high = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [width - 1, height - 1])
    mask = np.zeros((high[1] - low[1] + 1, high[0] - low[0] + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [(corners - low).astype(np.int32)], 1)
    window = probability[low[1] : high[1] + 1, low[0] : high[0] + 1]
    return float(cv2.mean(window, mask)[0])


def boxes(probability: np.ndarray, params: ReaderParams, threshold: float) -> list[tuple[np.ndarray, float]]:
    """Text boxes of a detection map (DB post-processing): each rotated box's corners in map pixels
    (grown by `unclip`) and its score, for boxes scoring at least `threshold`."""
    mask = cv2.dilate((probability > params.map_threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[np.ndarray, float]] = []
    for contour in contours[:1000]:
        (cx, cy), (width, height), angle = cv2.minAreaRect(contour)
        if min(width, height) < 3:
            continue
        score = _box_score(probability, cv2.boxPoints(((cx, cy), (width, height), angle)))
        if score < threshold:
            continue
        # A rectangle offset by d on every side stays a rectangle d larger each way (DB's unclip).
        grow = width * height * params.unclip / (2 * (width + height))
        grown = ((cx, cy), (width + 2 * grow, height + 2 * grow), angle)
        if min(grown[1]) < 5:
            continue
        found.append((_ordered(cv2.boxPoints(grown)), score))
    return found


def crop_line(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The line inside a box, straightened (a tall crop is turned to lie horizontal)."""
    width = int(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3])))
    height = int(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    line = cv2.warpPerspective(
        rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    return np.rot90(line) if height >= 1.5 * width else line


def recogniser_input(lines: list[np.ndarray]) -> np.ndarray:
    """A (B, 3, 48, W) float32 BGR batch in [-1, 1]: each line 48 px high, padded right to the widest."""
    ratios = [min(line.shape[1] / line.shape[0], MAX_LINE_RATIO) for line in lines]
    width = math.ceil(LINE_HEIGHT * max(*ratios, 320 / LINE_HEIGHT))
    batch = np.zeros((len(lines), 3, LINE_HEIGHT, width), dtype=np.float32)
    for row, (line, ratio) in enumerate(zip(lines, ratios, strict=True)):
        resized = cv2.resize(line, (min(width, math.ceil(LINE_HEIGHT * ratio)), LINE_HEIGHT))
        batch[row, :, :, : resized.shape[1]] = resized[:, :, ::-1].transpose(2, 0, 1) / 127.5 - 1.0
    return batch


def ctc_decode(probabilities: np.ndarray, characters: list[str]) -> list[tuple[str, float]]:
    """Greedy CTC decoding of (B, T, C) probabilities: each line's text and mean character probability."""
    best, score = probabilities.argmax(axis=2), probabilities.max(axis=2)
    decoded: list[tuple[str, float]] = []
    for indices, scores in zip(best, score, strict=True):
        keep = indices != 0
        keep[1:] &= indices[1:] != indices[:-1]
        text = "".join(characters[index] for index in indices[keep] if index < len(characters))
        decoded.append((text.strip(), float(scores[keep].mean()) if keep.any() else 0.0))
    return decoded


def is_noise(text: str, confidence: float, min_confidence: float) -> bool:
    """A line not worth indexing: read with low confidence, or fewer than two letters or digits."""
    return confidence < min_confidence or sum(char.isalnum() for char in text) < 2


class TextReader:
    """Reads the text in pictures: the gate, detection, recognition, noise filtering (module docstring).

    Loaded lazily (`load`, or the first `read`); pickling keeps only the settings, so each process
    (DataLoader worker, Ray actor) loads its own sessions, with `threads` intra-op threads each.
    """

    model_id = MODEL_ID

    def __init__(self, params: ReaderParams | None = None, threads: int = 1, device: str = "cpu") -> None:
        self.params = params or ReaderParams()
        self.threads = threads
        self.device = device
        self._sessions: tuple[Any, Any] | None = None
        self._characters: list[str] = []
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type[TextReader], tuple[ReaderParams, int, str]]:
        """Only the settings travel to another process; it loads the networks itself."""
        return (TextReader, (self.params, self.threads, self.device))

    @property
    def loaded(self) -> bool:
        """Whether the networks are loaded in this process."""
        return self._sessions is not None

    def load(self, device: object = None) -> None:
        """Open both networks on `device` (a torch.device or its name; CUDA when ONNX Runtime has it),
        then warm up; idempotent. Raises ModelUnavailable when the wheel is not installed."""
        with self._lock:
            if self._sessions is not None:
                return
            start = time.perf_counter()
            self.device = str(device) if device is not None else self.device
            models = model_dir()
            detector = _session(models / DETECTOR, self.threads, self.device)
            recogniser = _session(models / RECOGNISER, self.threads, self.device)
            self._characters = _characters(recogniser)
            self._sessions = (detector, recogniser)
        self.warmup()
        log.info("TextReader %s ready in %.1fs", self.model_id, time.perf_counter() - start)

    def warmup(self) -> None:
        """Run both networks once on a blank picture and a blank line."""
        self._detect(np.full((64, 64, 3), 255, dtype=np.uint8), self.params.gate_side, 1.0)
        self._recognise([np.full((LINE_HEIGHT, 160, 3), 255, dtype=np.uint8)])

    def _networks(self) -> tuple[Any, Any]:
        """The sessions, loading them on first use."""
        if self._sessions is None:
            self.load()
        assert self._sessions is not None
        return self._sessions

    def _detect(self, rgb: np.ndarray, side: int, threshold: float) -> list[tuple[np.ndarray, float]]:
        """Boxes found at `side` px, their corners in the pixels of `rgb`."""
        detector, _ = self._networks()
        tensor = detector_input(rgb, side)
        probability = detector.run(None, {detector.get_inputs()[0].name: tensor})[0][0, 0]
        scale = np.array([rgb.shape[1] / tensor.shape[3], rgb.shape[0] / tensor.shape[2]], dtype=np.float32)
        return [(corners * scale, score) for corners, score in boxes(probability, self.params, threshold)]

    def _recognise(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        """Each line's text and confidence, in batches of similar widths."""
        _, recogniser = self._networks()
        order = sorted(range(len(lines)), key=lambda i: lines[i].shape[1] / lines[i].shape[0])
        read: dict[int, tuple[str, float]] = {}
        for first in range(0, len(order), self.params.batch):
            chosen = order[first : first + self.params.batch]
            batch = recogniser_input([lines[i] for i in chosen])
            probabilities = recogniser.run(None, {recogniser.get_inputs()[0].name: batch})[0]
            read.update(zip(chosen, ctc_decode(probabilities, self._characters), strict=True))
        return [read[i] for i in range(len(lines))]

    def has_text(self, image: Image.Image) -> bool:
        """The gate: whether the detection network at `gate_side` px sees any line of text."""
        rgb = rgb_array(image)
        return rgb is not None and bool(self._detect(rgb, self.params.gate_side, self.params.gate_threshold))

    def read(self, image: Image.Image) -> ImageText:
        """The text of a picture, noise left out; empty for a picture without text or one it cannot read."""
        rgb = rgb_array(image)
        if rgb is None or not self._detect(rgb, self.params.gate_side, self.params.gate_threshold):
            return ImageText()
        found = self._detect(rgb, self.params.read_side, self.params.box_threshold)
        if not found:
            return ImageText(gated=True)
        crops = [crop_line(rgb, corners) for corners, _ in found]
        size = np.array([rgb.shape[1], rgb.shape[0]], dtype=np.float32)
        lines = tuple(
            TextLine(text, round(confidence, 4), tuple((float(x), float(y)) for x, y in corners / size))
            for (corners, _), (text, confidence) in zip(found, self._recognise(crops), strict=True)
            if not is_noise(text, confidence, self.params.min_confidence)
        )
        return ImageText(tuple(line for row in rows(lines) for line in row), gated=True)
