"""Stage 3, second source: captioned reference pictures name images (kNN) and show what queries look like."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.pca import Pca

DATA = Path(__file__).parent / "data"
DEFAULT_SET = "clipart"  # made by scripts/references.py from Debian's clip-art and emoji packages


def reference_path(name: str, model_id: str, folder: Path = DATA) -> Path:
    """Where the reference set `name` encoded by `model_id` lives."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id)
    return folder / f"references-{name}-{safe}.npz"


@dataclass(frozen=True)
class VisualHint:
    """What a text query looks like: a unit direction in the image encoder's feature space, and its weight.

    app/ranking.py re-ranks a query's best matches with it.
    """

    direction: np.ndarray
    weight: float


@dataclass
class ReferenceSet:
    """Pictures with captions, stored as the image encoder's features (PCA-compressed), one caption each."""

    name: str
    model_id: str
    captions: list[str]  # distinct captions
    caption_of: np.ndarray  # (N,) row → index into captions
    features: np.ndarray  # (N, k) float16 unit rows in the PCA space
    pca: Pca  # centred projection of the encoder's unit features
    _features: torch.Tensor = field(init=False, repr=False)
    _caption_of: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._features = torch.from_numpy(np.ascontiguousarray(self.features, dtype=np.float32))
        self._caption_of = torch.from_numpy(self.caption_of.astype(np.int64))

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def neighbours(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities and rows of the k nearest references of each image feature."""
        unit = torch.nn.functional.normalize(features.float().cpu(), dim=-1).numpy()
        projected = torch.from_numpy(self.pca.transform(unit))
        scores = projected @ self._features.T
        top = torch.topk(scores, min(k, len(self)), dim=-1)
        return top.values, top.indices

    def transfer(
        self, features: torch.Tensor, caption_vectors: torch.Tensor, k: int, temperature: float
    ) -> torch.Tensor:
        """Per image: softmax(similarity / temperature)-weighted mean of its k nearest captions' vectors."""
        scores, rows = self.neighbours(features, k)
        weights = torch.softmax(scores / temperature, dim=-1)
        return torch.einsum("bk,bkd->bd", weights, caption_vectors[self._caption_of[rows]])

    def captions_near(self, features: torch.Tensor, k: int, temperature: float) -> list[tuple[str, float]]:
        """The captions of one image's k nearest references, softmax-weighted by similarity."""
        return self.near(features, k, temperature)[0]

    def near(
        self, features: torch.Tensor, k: int, temperature: float
    ) -> tuple[list[tuple[str, float]], float]:
        """One image's k nearest references' captions, softmax-weighted by similarity, and the cosine of
        the nearest (one search for both)."""
        scores, rows = self.neighbours(features[None], k)
        weights = torch.softmax(scores[0] / temperature, dim=-1)
        captions = [
            (self.captions[int(self.caption_of[int(row)])], float(weight))
            for row, weight in zip(rows[0], weights, strict=True)
        ]
        return captions, float(scores[0, 0]) if len(captions) else 0.0

    def look_of(self, caption_scores: torch.Tensor, k: int, temperature: float) -> np.ndarray:
        """Unit feature-space direction of the k references whose captions best match a text query."""
        top = torch.topk(caption_scores[self._caption_of], min(k, len(self)))
        weights = torch.softmax(top.values / temperature, dim=-1)
        mean = torch.nn.functional.normalize(weights @ self._features[top.indices], dim=-1)
        # Back from the PCA space: a direction in the centred feature space (the mean shifts every
        # image's cosine by the same amount, which does not change a ranking).
        direction = mean.numpy() @ self.pca.components
        unit: np.ndarray = (direction / max(float(np.linalg.norm(direction)), 1e-12)).astype(np.float32)
        return unit

    def save(self, path: Path) -> None:
        """Write the set to one .npz file."""
        meta = {"name": self.name, "model_id": self.model_id, "captions": self.captions}
        np.savez(
            path,
            meta=np.array(json.dumps(meta)),
            caption_of=self.caption_of.astype(np.int32),
            features=self.features.astype(np.float16),
            components=self.pca.components,
            mean=self.pca.mean,
        )

    @classmethod
    def load(cls, path: Path) -> ReferenceSet:
        """Read what save wrote."""
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                name=str(meta["name"]),
                model_id=str(meta["model_id"]),
                captions=[str(c) for c in meta["captions"]],
                caption_of=data["caption_of"],
                features=data["features"],
                pca=Pca(components=data["components"], mean=data["mean"], centred=True),
            )


def find_references(name: str, model_id: str, folder: Path = DATA) -> ReferenceSet | None:
    """The reference set made for this image encoder, or None when there is none."""
    path = reference_path(name, model_id, folder)
    return ReferenceSet.load(path) if name and path.is_file() else None
