"""What the API serves, independent of HTTP: search by text or image, describe, fetch images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app import ranking
from app.describer import Describer, Evidence, Sentence
from app.errors import BadQuery, ModelLoading, NotReady
from app.index import ImageRecord, Index
from app.pipeline import Models, Pipeline
from app.preprocessing import decode

log = logging.getLogger(__name__)


@dataclass
class Hit:
    """One ranked result."""

    record: ImageRecord
    score: float
    duplicate_ids: list[str] = field(default_factory=list)  # near-duplicates folded into it (app/ranking.py)

    @property
    def duplicates(self) -> int:
        """How many near-duplicates were folded into this result."""
        return len(self.duplicate_ids)


@dataclass
class Description:
    """A sentence, the labels it was written from, and what each of its phrases rests on."""

    text: str
    labels: list[tuple[str, float]]
    confidence: float | None = None  # probability behind the subject; None for generated text
    evidence: list[Evidence] = field(default_factory=list)
    generated: bool = False  # text mode: written by the language model from a query, not from an image


class SearchService:
    """An opened index and the models that match it."""

    def __init__(
        self,
        index: Index,
        pipeline: Pipeline,
        max_pixels: int = 50_000_000,
        max_new_tokens: int = 24,
        dedup_threshold: float = 0.0,
    ) -> None:
        models = pipeline.models
        index.check_compatible(models.profile, models.ids(), pipeline.text_dim)
        built = index.meta.precision
        if built != models.image.precision:
            log.info(
                "index built with the %s image encoder, serving with %s (vectors agree to cosine ~0.99)",
                built,
                models.image.precision,
            )
        self.index = index
        self.pipeline = pipeline
        self.describer = Describer(models.lm, max_new_tokens)
        self.max_pixels = max_pixels
        self.dedup_threshold = dedup_threshold  # visual cosine at which results fold; 0: never

    @property
    def models(self) -> Models:
        """The loaded models (kept across reloads)."""
        return self.pipeline.models

    @property
    def count(self) -> int:
        """Number of indexed images."""
        return self.index.count

    @property
    def generation(self) -> str | None:
        """The index generation served (None for a flat index)."""
        return self.index.generation

    def close(self) -> None:
        """Release the index."""
        self.index.close()

    def image(self, image_id: str) -> ImageRecord:
        """An indexed image's record (ImageNotFound otherwise)."""
        return self.index.get(image_id)

    def original_path(self, record: ImageRecord) -> Path:
        """The file of an indexed image's original."""
        return self.index.original_path(record)

    def thumbnail_path(self, record: ImageRecord) -> Path:
        """The file of an indexed image's thumbnail."""
        return self.index.thumbnail_path(record)

    def _hits(self, ranked: list[ranking.Ranked]) -> list[Hit]:
        """Attach manifest records to ranked results and ids to their folded near-duplicates."""
        rows = [result.row for result in ranked]
        folded = [row for result in ranked for row in result.duplicate_rows]
        records = self.index.records(rows + folded)
        ids = iter([record.id for record in records[len(rows) :]])
        return [
            Hit(record, result.score, [next(ids) for _ in result.duplicate_rows])
            for record, result in zip(records[: len(rows)], ranked, strict=True)
        ]

    def search_text(self, query: str, top_k: int, offset: int = 0) -> list[Hit]:
        """Images ranked by similarity to a text query; near-duplicates folded (dedup_threshold > 0)."""
        query = " ".join(query.split())
        if not query:
            raise BadQuery("query must contain at least one non-space character")
        encoded = self.pipeline.encode_query(query)
        return self._hits(
            ranking.rank(
                self.index,
                encoded.vector,
                top_k,
                offset,
                visual=encoded.visual,
                threshold=self.dedup_threshold,
            )
        )

    def search_image(self, data: bytes, top_k: int, offset: int = 0) -> list[Hit]:
        """Indexed images that look like the uploaded one; near-duplicates folded (dedup_threshold > 0)."""
        image = decode(data, self.max_pixels)
        encoded = self.pipeline.encode_images([image])
        return self._hits(
            ranking.rank(
                self.index, encoded.features[0], top_k, offset, space="visual", threshold=self.dedup_threshold
            )
        )

    def _ready_describer(self) -> Describer:
        """The describer once its language model has loaded; ModelLoading (503 + Retry-After) until then."""
        lm = self.describer.lm
        if lm is not None and not lm.loaded:
            if lm.error:
                raise NotReady(f"the language model failed to load: {lm.error}")
            raise ModelLoading("the language model is still loading; /describe answers once it has")
        return self.describer

    def reference_captions(self, features: np.ndarray) -> list[tuple[str, float]]:
        """Captions of the reference pictures nearest to one image's features (none without a set)."""
        bridge = self.pipeline.bridge
        if bridge.references is None:
            return []
        p = bridge.params
        return bridge.references.captions_near(
            torch.from_numpy(features), p.reference_k, p.reference_temperature
        )

    def describe_upload(self, data: bytes) -> Description:
        """Describe an uploaded image from its labels and the reference captions that agree with them."""
        describer = self._ready_describer()
        image = decode(data, self.max_pixels)
        encoded = self.pipeline.encode_images([image])
        labels = encoded.labels[0]
        sentence = describer.describe(labels, self.reference_captions(encoded.features[0]))
        return self._description(sentence, labels)

    def describe_indexed(self, image_id: str) -> Description:
        """Describe an indexed image from the labels stored at build time."""
        describer = self._ready_describer()
        record = self.image(image_id)
        return self._description(describer.describe(record.labels), record.labels)

    def describe_query(self, query: str) -> Description:
        """The original design's text mode: a sentence generated from a query (it describes no image)."""
        query = " ".join(query.split())
        if not query:
            raise BadQuery("query must contain at least one non-space character")
        return Description(self._ready_describer().from_query(query), [], generated=True)

    @staticmethod
    def _description(sentence: Sentence, labels: list[tuple[str, float]]) -> Description:
        """A Description of a composed sentence."""
        return Description(sentence.text, labels, round(sentence.confidence, 4), sentence.evidence)
