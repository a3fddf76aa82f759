"""Seed image encoder: torchvision ResNet-50 (IMAGENET1K_V2), fc removed for the pooled feature."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from app.encoders.base import ImageEncoder
from app.encoders.hub import unreachable
from app.labels import imagenet_labels
from app.preprocessing import ImageSpec


class ResNetEncoder(ImageEncoder):
    """ResNet-50: 2048-d pooled feature and 1000 ImageNet logits."""

    model_id = "resnet50-imagenet1k-v2"
    spec = ImageSpec(size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fit="pad")
    feature_dim = 2048

    def __init__(self, weights: str | None = None, model: nn.Module | None = None) -> None:
        super().__init__()
        self.weights = weights
        self._given = model
        self.labels = list(imagenet_labels())
        if weights:
            self.model_id = f"resnet50:{weights}"

    def _load(self) -> None:
        """Build ResNet-50 from a local state dict, the given module, or torchvision's weights."""
        from torchvision.models import ResNet50_Weights, resnet50

        if self._given is not None:
            model = self._given
        elif self.weights:
            model = resnet50(weights=None)
            model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
        else:
            _require_cached_or_online(ResNet50_Weights.IMAGENET1K_V2.url)
            model = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
        self.fc: Any = model.fc
        model.fc = nn.Identity()
        self.net = model.eval().to(self.device, self.dtype)
        self.fc = self.fc.to(self.device, self.dtype)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled feature from the trunk, logits from the removed fc."""
        features = self.net(batch)
        return features, self.fc(features)


def _require_cached_or_online(url: str) -> None:
    """FileNotFoundError instead of a download when torch has no copy and downloads are off
    (HF_HUB_OFFLINE) or the server does not answer (torch's download would hang or fail slowly)."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        raise FileNotFoundError(
            f"no copy of {cached.name} in {cached.parent} and downloads are off (HF_HUB_OFFLINE)"
        )
    reason = unreachable(url)
    if reason is not None:
        raise FileNotFoundError(
            f"no copy of {cached.name} in {cached.parent} and {url} cannot be reached ({reason})"
        )
