"""CPU int8: the float32 ONNX export statically quantized by ONNX Runtime (QDQ, per-channel), cached.

Activation ranges come from a calibration table shipped in app/data (made by scripts/calibrate.py from
pictures that are not benchmark images); without one, from scikit-image's photos at hand. The int8
file sits beside the float32 export, its name keyed by everything it depends on, with a sha256 sidecar
so that a damaged copy is rebuilt rather than run. A model made is compared with float32 on a few
photos, and reported (a warning) if they disagree.

Running it: on x86 CPUs without VNNI, ONNX Runtime's uint8 × int8 kernels add each two neighbouring
products into a saturating 16-bit sum (VPMADDUBSW), which EfficientNet-Lite's convolutions overflow
(feature cosine to float32 0.86–0.94 on photos instead of 0.99). There every session sets ONNX Runtime's
`session.x64quantprecision`, which turns the int8 weights into uint8 when the session loads and
multiplies them without saturation (docs/performance.md); with VNNI (or on ARM) nothing changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from app.encoders.base import file_digest

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent.parent / "data"
FORMAT = 1  # bump when the way the int8 file is made changes
Photos = Callable[[], np.ndarray]  # calibration pictures, preprocessed: (N, 3, S, S) float32
AGREEMENT = 0.97  # a new int8 model whose features fall below this cosine to float32 is reported
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")  # x86 int8 dot products summed in 32 bits, without saturation
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@functools.cache
def saturating_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ONNX Runtime's u8×s8 kernels saturate on this CPU: x86 without AVX-VNNI or AVX512-VNNI.

    Read once per process; an x86 CPU whose flags cannot be read counts as saturating (the exact
    kernels are only slower there).
    """
    if platform.machine().lower() not in X86:
        return False
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return True
    flags = {flag for line in lines if line.startswith("flags") for flag in line.split()}
    saturating = not flags.intersection(VNNI_FLAGS)
    log.info(
        "int8 on this CPU: %s", "exact u8×u8 kernels (no VNNI)" if saturating else "u8×s8 kernels (VNNI)"
    )
    return saturating


def exact_int8(options: Any) -> Any:
    """ONNX Runtime session options, with int8 weights run as uint8 where u8×s8 would saturate."""
    options.add_session_config_entry("session.x64quantprecision", "1" if saturating_cpu() else "0")
    return options


@dataclass(frozen=True)
class QuantConfig:
    """How the int8 model is made; every field is part of its cache key."""

    method: str = "Percentile"  # onnxruntime CalibrationMethod name: MinMax, Percentile, Entropy
    percentile: float = 99.999  # Percentile only
    keep_float: tuple[str, ...] = ()  # "stem" (first conv), "head" (classifier), "last" (last 1×1 conv)

    def key(self, table: Path | None) -> str:
        """12 hex digits over the settings, the calibration table and onnxruntime's version."""
        import onnxruntime

        parts = [FORMAT, asdict(self), file_digest(table) if table else "photos", onnxruntime.__version__]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


DEFAULT_CONFIG = QuantConfig()


def shipped_table(model_id: str, weights_digest: str, config: QuantConfig, folder: Path = DATA) -> Path:
    """Where the calibration table (activation ranges) for these weights and this method is shipped."""
    return folder / f"int8-ranges-{model_id}-{weights_digest}-{config.method.lower()}.json"


def int8_path(float_path: Path, config: QuantConfig, table: Path | None) -> Path:
    """The int8 file's path beside the float32 export."""
    return float_path.with_name(f"{float_path.stem}-int8-{config.key(table)}.onnx")


def _sidecar(path: Path) -> Path:
    """The sha256 written beside a cached int8 file."""
    return path.with_name(path.name + ".sha256")


def intact(path: Path) -> bool:
    """Whether the cached file exists and still has the digest written when it was made."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return sidecar.read_text().strip() == digest


def _kept_float(model: Any, config: QuantConfig) -> list[str]:
    """Names of the nodes kept in float32 by `config.keep_float`."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    heads = [node.name for node in model.graph.node if node.op_type in ("Gemm", "MatMul")]
    chosen = {"stem": convs[:1], "last": convs[-1:], "head": heads}
    return [name for part in config.keep_float for name in chosen.get(part, [])]


class _Reader:
    """ONNX Runtime calibration reader over a (N, 3, S, S) float32 array, four pictures at a time.

    Every batch has the same size (histogram calibration stacks them); a remainder is left out.
    """

    def __init__(self, pixels: np.ndarray, size: int = 4) -> None:
        size = min(size, len(pixels))
        self.batches: Iterator[np.ndarray] = iter(
            [pixels[first : first + size] for first in range(0, len(pixels) - size + 1, size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None at the end."""
        batch = next(self.batches, None)
        return None if batch is None else {"pixels": np.ascontiguousarray(batch, dtype=np.float32)}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item


def _fits(table: Path, model: Any) -> bool:
    """Whether a shipped table names tensors of this graph (another exporter may name them otherwise)."""
    names = {name for node in model.graph.node for name in (*node.input, *node.output)}
    ranges = json.loads(table.read_text()).get("data", {})
    return bool(ranges) and set(ranges) <= names


def quantize(float_path: Path, target: Path, config: QuantConfig, table: Path | None, photos: Photos) -> Path:
    """Write the int8 QDQ model of `float_path` to `target` (atomic, with its sha256 sidecar).

    Activation ranges come from `table` when it fits the graph (read, never written), else from
    calibrating on `photos()`.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgsearch-int8-", dir=target.parent) as scratch:
        work = Path(scratch)
        prepared = work / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        ranges = work / "ranges.json"
        reader = None
        if table is not None and table.is_file() and _fits(table, graph):
            shutil.copyfile(table, ranges)
        else:
            log.warning("calibrating %s on the photos at hand (no fitting table %s)", float_path.name, table)
            reader = _Reader(photos())
        extra: dict[str, Any] = {"WeightSymmetric": True}
        if config.method == "Percentile":
            extra["CalibPercentile"] = config.percentile
        partial = work / "int8.onnx"
        quantize_static(
            str(prepared),
            str(partial),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, config.method),
            nodes_to_exclude=_kept_float(graph, config),
            extra_options=extra,
            calibration_cache_path=str(ranges),
        )
        if table is not None and not table.is_file() and ranges.is_file():
            shutil.copyfile(ranges, table)  # scripts/calibrate.py: the table to ship
        tmp_sidecar = work / "sha256"
        tmp_sidecar.write_text(hashlib.sha256(partial.read_bytes()).hexdigest() + "\n")
        _sidecar(target).unlink(missing_ok=True)
        partial.replace(target)
        os.replace(tmp_sidecar, _sidecar(target))
    seconds = time.perf_counter() - started
    origin = "photos" if reader is not None else "the shipped table"
    log.info(
        "quantized %s to int8 in %.1fs (%s, ranges from %s)", float_path.name, seconds, target.name, origin
    )
    return target


def agreement(float_path: Path, int8_path: Path, pixels: np.ndarray) -> float:
    """The lowest cosine between the two models' first outputs (the features) over `pixels`, each run as
    the service runs it."""
    import onnxruntime as ort

    features = []
    for path in (float_path, int8_path):
        options = exact_int8(ort.SessionOptions())
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        features.append(first.reshape(len(pixels), -1).astype(np.float64))
    exact, fast = features
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(fast, axis=1)
    return float(((exact * fast).sum(1) / np.maximum(norms, 1e-12)).min())


def _check(float_path: Path, target: Path, check: Photos) -> None:
    """Report a new int8 model whose features disagree with float32's on the check pictures."""
    pixels = check()
    cosine = agreement(float_path, target, pixels)
    if cosine < AGREEMENT:
        log.warning(
            "the int8 model %s disagrees with float32: feature cosine %.3f < %.2f on %d pictures "
            "(IMGSEARCH_PRECISION=fp32 runs float32)",
            *(target.name, cosine, AGREEMENT, len(pixels)),
        )
    else:
        log.info(
            "int8 model %s: feature cosine to float32 ≥ %.3f on %d pictures", target.name, cosine, len(pixels)
        )


def int8_model(
    float_path: Path,
    model_id: str,
    weights_digest: str,
    photos: Photos,
    config: QuantConfig = DEFAULT_CONFIG,
    check: Photos | None = None,
) -> Path:
    """The int8 model cached beside `float_path`, once per weights, settings and table; remade if damaged.

    A model made now is compared with float32 on `check()`'s pictures, and reported if they disagree.
    """
    table = shipped_table(model_id, weights_digest, config)
    shipped = table if table.is_file() else None
    target = int8_path(float_path, config, shipped)
    if intact(target):
        return target
    if target.exists():
        log.warning("the cached int8 model %s is damaged or incomplete: making it again", target.name)
    log.info("preparing %s once: quantizing it to int8 (%s)", model_id, target)
    made = quantize(float_path, target, config, shipped, photos)
    if check is not None:
        _check(float_path, made, check)
    return made


PHOTO_NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "logo", "retina",
    "hubble_deep_field", "camera", "brick", "grass", "gravel", "moon", "clock", "coins", "page", "text",
)  # fmt: skip


CHECK_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "horse", "camera")


def scikit_image_pictures(names: tuple[str, ...]) -> list[Image.Image]:
    """scikit-image's bundled pictures of these names, in RGB (a binary one black and white)."""
    from skimage import data

    pictures = []
    for name in names:
        array = np.asarray(getattr(data, name)())
        picture = Image.fromarray(array.astype(np.uint8) if array.dtype != bool else array * np.uint8(255))
        pictures.append(picture.convert("RGB"))
    return pictures


def check_photos(preprocess: Callable[[Image.Image], torch.Tensor]) -> np.ndarray:
    """The pictures a new int8 model is compared with float32 on: six scikit-image photos, whole."""
    return torch.stack([preprocess(picture) for picture in scikit_image_pictures(CHECK_NAMES)]).numpy()


def scikit_image_photos(preprocess: Callable[[Image.Image], torch.Tensor]) -> np.ndarray:
    """scikit-image's bundled pictures, whole, mirrored and as four corner crops: (N, 3, S, S) float32."""
    pixels: list[torch.Tensor] = []
    for picture in scikit_image_pictures(PHOTO_NAMES):
        width, height = picture.size
        crops = [(0, 0), (width // 3, 0), (0, height // 3), (width // 3, height // 3)]
        views = [picture, ImageOps.mirror(picture)]
        views += [picture.crop((x, y, x + 2 * width // 3, y + 2 * height // 3)) for x, y in crops]
        pixels += [preprocess(view) for view in views]
    return torch.stack(pixels).numpy()
