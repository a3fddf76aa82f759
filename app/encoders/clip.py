"""CLIP / SigLIP profile: image and text towers trained into one space, so no bridge is needed."""

from __future__ import annotations

import threading
from typing import Any

import torch

from app.encoders.base import ImageEncoder, TextEncoder
from app.encoders.hub import hub_source
from app.preprocessing import ImageSpec

_shared: dict[tuple[str, str, str], Any] = {}
_shared_lock = threading.Lock()


def _joint_model(source: str, device: torch.device, dtype: torch.dtype) -> Any:
    """Load a CLIP/SigLIP checkpoint once per device, shared by both towers."""
    from transformers import AutoModel

    key = (source, str(device), str(dtype))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = AutoModel.from_pretrained(source).eval().to(device, dtype)
        return _shared[key]


def _pooled(output: Any) -> torch.Tensor:
    """get_*_features returns a tensor (transformers 4) or an output with pooler_output (5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor = output.pooler_output
    return pooled


class ClipImageEncoder(ImageEncoder):
    """Image tower: the projected embedding is the feature; no classifier logits."""

    labels = None

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = hub_source(source)  # a local copy, or a hub id that can be downloaded now
        self.model_id = source
        self.spec = self._spec_of(self.source)

    @staticmethod
    def _spec_of(source: str) -> ImageSpec:
        """Input size and normalisation from the checkpoint's own image processor config."""
        from transformers import AutoImageProcessor

        # Typed in some transformers releases and not in others: called through Any, no ignore needed.
        auto: Any = AutoImageProcessor
        processor = auto.from_pretrained(source)
        crop = getattr(processor, "crop_size", None) or processor.size
        size = int(crop.get("height") or crop.get("shortest_edge") or 224)
        mean = tuple(float(v) for v in processor.image_mean)
        std = tuple(float(v) for v in processor.image_std)
        return ImageSpec(
            size=size, mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]), fit="crop"
        )

    def _load(self) -> None:
        """Load (or share) the joint model."""
        self.net = _joint_model(self.source, self.device, self.dtype)
        self.feature_dim = int(
            self.net.config.projection_dim
            if hasattr(self.net.config, "projection_dim")
            else self.net.config.vision_config.hidden_size
        )

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected image embeddings."""
        return _pooled(self.net.get_image_features(pixel_values=batch)), None


class ClipTextEncoder(TextEncoder):
    """Text tower of the same checkpoint."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.model_id = source

    def _load(self) -> None:
        """Load tokenizer and (shared) joint model."""
        from transformers import AutoTokenizer

        self.source = hub_source(self.source)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.net = _joint_model(self.source, self.device, self.dtype)
        config = self.net.config
        self.dim = int(
            config.projection_dim if hasattr(config, "projection_dim") else config.text_config.hidden_size
        )
        self.max_length = int(config.text_config.max_position_embeddings)

    def _forward(self, texts: list[str]) -> torch.Tensor:
        """Projected text embeddings."""
        padding = "max_length" if "siglip" in type(self.net).__name__.lower() else True
        tokens = self.tokenizer(
            texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return _pooled(self.net.get_text_features(**tokens))
