"""The encode path shared by the batch build and the service: preprocess → encoder → bridge → PCA."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from app.bridge import Bridge
from app.encoders.base import ImageEncoder, ImageOutput, LanguageModel, TextEncoder
from app.labels import ClassHint
from app.pca import Pca
from app.preprocessing import Pixels, mirror, stack
from app.references import VisualHint


@dataclass
class Models:
    """The loaded models of one profile."""

    profile: str
    image: ImageEncoder
    text: TextEncoder
    lm: LanguageModel | None

    def ids(self) -> dict[str, str]:
        """Model ids by role, as stored in an index's meta.json (`labels`: the other classifier, if any)."""
        ids = {
            "image": self.image.model_id,
            "text": self.text.model_id,
            "lm": self.lm.model_id if self.lm else "",
        }
        return ids | ({"labels": self.image.label_model} if self.image.label_model else {})


@dataclass
class Encoded:
    """A batch of images in every space the index stores."""

    vectors: np.ndarray  # text-space vectors (after PCA when set), unit rows
    features: np.ndarray  # visual features, unit rows
    labels: list[list[tuple[str, float]]]


@dataclass(frozen=True)
class Query:
    """A text query in the index's space, with its look (reference set) and the classes its noun names."""

    vector: np.ndarray
    visual: VisualHint | None = None
    classes: ClassHint | None = None


def _unit(matrix: torch.Tensor) -> np.ndarray:
    """Unit rows as float32 numpy."""
    unit: np.ndarray = torch.nn.functional.normalize(matrix.float(), dim=-1).numpy()
    return unit


class Pipeline:
    """Turns images and queries into comparable vectors; one instance serves build and service."""

    def __init__(
        self,
        models: Models,
        bridge: Bridge,
        pca: Pca | None = None,
        flip: bool = True,
        cache_size: int = 1024,
    ) -> None:
        self.models = models
        self.bridge = bridge
        self.pca = pca
        self.flip = flip
        self.preprocess = models.image.inputs  # batch and service: every input the encoder takes
        self._cache: OrderedDict[str, Query] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @property
    def text_dim(self) -> int:
        """Dimension of text-space vectors before PCA."""
        return int(self.bridge.label_vectors.shape[1]) if not self.bridge.identity else self.models.text.dim

    def run_encoder(self, pixels: Pixels) -> ImageOutput:
        """Encoder forward, averaged with the mirrored image when `flip` is on (test-time augmentation)."""
        output = self.models.image.encode(pixels)
        if not self.flip:
            return output
        mirrored = self.models.image.encode(mirror(pixels))
        logits = None
        if output.logits is not None and mirrored.logits is not None:
            logits = (output.logits + mirrored.logits) / 2
        return ImageOutput(features=(output.features + mirrored.features) / 2, logits=logits)

    def encode_pixels(self, pixels: Pixels, label_k: int = 5, project: bool = True) -> Encoded:
        """Preprocessed batch → text-space vectors, visual features and top labels.

        `project=False` leaves the vectors unprojected by PCA (the build fits PCA on them afterwards).
        """
        output = self.run_encoder(pixels)
        vectors = self.bridge.to_text_space(output)
        if project and self.pca is not None:
            vectors = self.pca.transform(vectors)
        return Encoded(
            vectors=vectors, features=_unit(output.features), labels=self.bridge.top_labels(output, label_k)
        )

    def encode_images(self, images: list[Image.Image], label_k: int = 5, project: bool = True) -> Encoded:
        """Decoded RGB pictures → Encoded (`project=False`: text-space vectors before PCA)."""
        pixels = stack([self.preprocess(image) for image in images])
        return self.encode_pixels(pixels, label_k, project)

    def image_features(self, images: list[Image.Image]) -> np.ndarray:
        """Decoded RGB pictures → unit visual features alone (search by image: no labeller runs)."""
        image = self.models.image
        pixels = torch.stack([image.preprocess(picture) for picture in images])
        features = image.features(pixels)
        if self.flip:
            features = (features + image.features(torch.flip(pixels, dims=[-1]))) / 2
        return _unit(features)

    def encode_query(self, text: str) -> Query:
        """Query text → unit vector in the index's space and what it looks like (LRU-cached)."""
        with self._cache_lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
        embedding = self.models.text.encode([text])
        visual = self.bridge.visual_hint(embedding[0])
        if self.pca is not None:
            embedding = self.pca.transform(embedding)
        result = Query(embedding[0], visual, self.bridge.class_hint(text))
        with self._cache_lock:
            self._cache[text] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result
