"""CPU fast path: an image encoder exported once to ONNX and run by ONNX Runtime (cached by weights hash)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.encoders.base import file_digest
from app.encoders.quantize import Photos, exact_int8, int8_model

log = logging.getLogger(__name__)
OPSET = 17


def _export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    target: Path,
    inputs: list[str],
    outputs: dict[str, dict[int, str]],
    axes: dict[int, str],
) -> Path:
    """Write `module` as ONNX, its inputs' `axes` and each output's own dynamic; atomic, timed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(partial),
            input_names=inputs,
            output_names=list(outputs),
            dynamic_axes={**{name: axes for name in inputs}, **outputs},
            opset_version=OPSET,
            dynamo=False,
        )
    partial.replace(target)
    log.info("exported %s for ONNX Runtime in %.1fs", target.name, time.perf_counter() - started)
    return target


def export(module: torch.nn.Module, size: int, target: Path) -> Path:
    """Write `module` (image batch → outputs) as ONNX with a dynamic batch axis; atomic."""
    batch = {0: "batch"}
    example = (torch.zeros(2, 3, size, size),)
    return _export(module, example, target, ["pixels"], {"features": batch, "logits": batch}, batch)


class OnnxRunner:
    """Runs an exported encoder on the CPU; called like the torch module it replaces."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = exact_int8(ort.SessionOptions())  # int8 without saturation (app/encoders/quantize.py)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between operators: decoding workers need those cycles.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of a float32 CPU batch."""
        pixels = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        features, logits = self.session.run(None, {"pixels": pixels})
        return torch.from_numpy(features), torch.from_numpy(logits)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for named inputs."""
        outputs: list[np.ndarray] = self.session.run(None, feeds)
        return outputs


def export_text(module: torch.nn.Module, target: Path) -> Path:
    """Write a text encoder (input_ids, attention_mask → pooled) as ONNX, batch and length dynamic; atomic."""
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    inputs = ["input_ids", "attention_mask"]
    return _export(module, example, target, inputs, {"pooled": {0: "batch"}}, {0: "batch", 1: "length"})


def cached_export_path(name: str, weights: Path, cache_dir: Path | None) -> Path:
    """Where the ONNX export of `weights` is cached: keyed by their sha256, torch's version and the opset."""
    key = f"{name}-{file_digest(weights)}-torch{torch.__version__.split('+')[0]}-opset{OPSET}.onnx"
    folder = Path(tempfile.mkdtemp(prefix="imgsearch-onnx-")) if cache_dir is None else cache_dir / "onnx"
    return folder / key


def onnx_runner(
    module: Callable[[], torch.nn.Module],
    size: int,
    weights: Path,
    name: str,
    cache_dir: Path | None,
    int8: Photos | None = None,
    int8_check: Photos | None = None,
) -> OnnxRunner:
    """ONNX Runtime session for the module `module()` builds, exported once per weights file under
    `cache_dir` (a start that finds the export does not build the PyTorch module at all).

    With `int8` (the calibration photos, read only if no shipped table fits), the session runs the
    statically quantized model made once beside the float32 export (app/encoders/quantize.py); a new
    one is compared with float32 on `int8_check()`'s pictures, and reported if they disagree.
    """
    import onnxruntime as ort

    digest = file_digest(weights)
    target = cached_export_path(name, weights, cache_dir)
    if not target.is_file():
        log.info("preparing %s once: exporting it to ONNX (%s)", name, target)
        export(module(), size, target)
    if int8 is not None:
        target = int8_model(target, name, digest, int8, check=int8_check)
    log.debug("ONNX Runtime %s on %s", ort.__version__, target)
    return OnnxRunner(target, torch.get_num_threads())
