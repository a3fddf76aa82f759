"""Stage 4: PCA compression of text-space vectors, fitted on the gallery and applied to queries too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The smallest of 64/128/256 within 1 point R@10 of no PCA on the relevance tune half (docs/relevance.md).
DEFAULT_DIM = 256


@dataclass
class Pca:
    """Projection onto principal components; `centred` subtracts the gallery mean first."""

    components: np.ndarray  # (k, D)
    mean: np.ndarray  # (D,)
    centred: bool = False

    @property
    def dim(self) -> int:
        """Output dimension."""
        return int(self.components.shape[0])

    @property
    def input_dim(self) -> int:
        """Input dimension."""
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int, centred: bool = False, chunk: int = 65536) -> Pca:
        """Principal axes from the covariance matrix, accumulated in chunks (memory independent of N)."""
        n, width = vectors.shape
        k = max(1, min(dim, n, width))
        total = np.zeros(width, dtype=np.float64)
        gram = np.zeros((width, width), dtype=np.float64)
        for first in range(0, n, chunk):
            block = np.asarray(vectors[first : first + chunk], dtype=np.float64)
            total += block.sum(axis=0)
            gram += block.T @ block
        mean = total / n
        covariance = gram - n * np.outer(mean, mean)
        _, axes = np.linalg.eigh(covariance)  # ascending eigenvalues
        components = axes[:, ::-1][:, :k].T
        # Deterministic signs: the largest-magnitude coordinate of each axis is positive.
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
        return cls(
            components=(components * signs[:, None]).astype(np.float32),
            mean=mean.astype(np.float32),
            centred=centred,
        )

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Project and renormalise to unit rows."""
        data = vectors.astype(np.float32)
        if self.centred:
            data = data - self.mean
        projected = data @ self.components.T
        norms = np.linalg.norm(projected, axis=-1, keepdims=True).clip(min=1e-12)
        unit: np.ndarray = (projected / norms).astype(np.float32)
        return unit

    def save(self, path: Path) -> None:
        """Write components, mean and mode to an .npz file."""
        np.savez(path, components=self.components, mean=self.mean, centred=np.array(self.centred))

    @classmethod
    def load(cls, path: Path) -> Pca:
        """Read what save wrote."""
        with np.load(path) as data:
            return cls(
                components=data["components"].astype(np.float32),
                mean=data["mean"].astype(np.float32),
                centred=bool(data["centred"]),
            )
