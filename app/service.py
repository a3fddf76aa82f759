"""What the API serves, independent of HTTP: search by text or image, describe, fetch images."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app import dedup
from app.bridge import BridgeParams
from app.describer import Describer
from app.errors import BadQuery
from app.index import ImageRecord, Index
from app.pipeline import Models, Pipeline
from app.preprocessing import decode
from app.registry import make_bridge

log = logging.getLogger(__name__)


@dataclass
class Hit:
    """One ranked result."""

    record: ImageRecord
    score: float
    duplicates: int = 0  # near-duplicates folded into this result (app/dedup.py)


@dataclass
class Description:
    """A sentence and the labels it was written from."""

    text: str
    labels: list[tuple[str, float]]


class SearchService:
    """An opened index and the models that match it."""

    def __init__(
        self,
        index: Index,
        models: Models,
        cache_dir: Path | None,
        max_pixels: int = 50_000_000,
        max_new_tokens: int = 24,
        query_cache_size: int = 1024,
    ) -> None:
        bridge = make_bridge(models, BridgeParams.from_json(index.meta.get("bridge", {})), cache_dir)
        pipeline = Pipeline(
            models, bridge, index.pca, flip=bool(index.meta.get("flip", True)), cache_size=query_cache_size
        )
        index.check_compatible(models.profile, models.ids(), pipeline.text_dim)
        built = (index.meta.get("precision") or {}).get("image", "fp32")
        if built != models.image.precision:
            log.info(
                "index built with the %s image encoder, serving with %s (vectors agree to cosine ~0.99)",
                built,
                models.image.precision,
            )
        self.index = index
        self.pipeline = pipeline
        self.describer = Describer(models.lm, max_new_tokens) if models.lm is not None else None
        self.max_pixels = max_pixels

    def _hits(self, ranked: list[dedup.Group]) -> list[Hit]:
        """Attach manifest records to ranked groups."""
        records = self.index.records([group.row for group in ranked])
        return [Hit(r, g.score, g.duplicates) for r, g in zip(records, ranked, strict=True)]

    def search_text(self, query: str, top_k: int, offset: int = 0, dedup_threshold: float = 0.0) -> list[Hit]:
        """Images ranked by similarity to a text query; near-duplicates folded when dedup_threshold > 0."""
        query = " ".join(query.split())
        if not query:
            raise BadQuery("query must contain at least one non-space character")
        encoded = self.pipeline.encode_query(query)
        return self._hits(
            dedup.search(self.index, encoded.vector, top_k, offset, dedup_threshold, visual=encoded.visual)
        )

    def search_image(
        self, data: bytes, top_k: int, offset: int = 0, dedup_threshold: float = 0.0
    ) -> list[Hit]:
        """Indexed images that look like the uploaded one; near-duplicates folded when dedup_threshold > 0."""
        image = decode(data, self.max_pixels)
        encoded = self.pipeline.encode_images([image])
        return self._hits(
            dedup.search(self.index, encoded.features[0], top_k, offset, dedup_threshold, space="features")
        )

    def describe_upload(self, data: bytes) -> Description:
        """Describe an uploaded image."""
        image = decode(data, self.max_pixels)
        labels = self.pipeline.encode_images([image]).labels[0]
        return Description(self._write(labels), labels)

    def describe_indexed(self, image_id: str) -> Description:
        """Describe an indexed image from the labels stored at build time."""
        record = self.index.get(image_id)
        return Description(self._write(record.labels), record.labels)

    def describe_query(self, query: str) -> Description:
        """The original design's text mode: a sentence written from a query."""
        query = " ".join(query.split())
        if not query:
            raise BadQuery("query must contain at least one non-space character")
        if self.describer is None:
            return Description(f"A picture of {query}.", [])
        return Description(self.describer.from_query(query), [])

    def _write(self, labels: list[tuple[str, float]]) -> str:
        """Sentence from labels, or a plain label sentence when no language model is loaded."""
        if self.describer is None:
            return f"A picture of {labels[0][0]}." if labels else "An image."
        return self.describer.from_labels(labels)
