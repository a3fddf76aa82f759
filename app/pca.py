"""Stage 4: PCA compression of text-space vectors, fitted on the gallery and applied to queries too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
    def fit(cls, vectors: np.ndarray, dim: int, centred: bool = False, seed: int = 0) -> Pca:
        """Fit scikit-learn's PCA; the dimension is capped by the number of vectors and their width."""
        from sklearn.decomposition import PCA

        k = max(1, min(dim, vectors.shape[0], vectors.shape[1]))
        model = PCA(n_components=k, random_state=seed, svd_solver="auto").fit(vectors.astype(np.float32))
        return cls(
            components=model.components_.astype(np.float32),
            mean=model.mean_.astype(np.float32),
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
