"""Stage 3: bring image outputs into the text space (ConSE + reference captions) and read labels."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from app.encoders.base import ImageOutput, TextEncoder
from app.labels import CLASS_WEIGHT, ClassHint, class_hint, imagenet_definitions, imagenet_labels, lemma_sets
from app.references import DATA as REFERENCE_DIR, DEFAULT_SET, ReferenceSet, VisualHint, find_references

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a drawing of a {}.",
    "a cartoon {}.",
    "a picture of a {}.",
    "{}",
    "a close-up photo of a {}.",
    "an illustration of a {}.",
)


@dataclass(frozen=True)
class BridgeParams:
    """How label distributions become text-space vectors; stored in the index's meta.json."""

    kind: str = "conse"
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    top_t: int = 0
    temperature: float = 1.0
    names: str = (
        "lemmas"  # "lemmas": all WordNet lemmas of a class ("tabby, tabby cat"); "short": torchvision's
    )
    definition_weight: float = 0.5  # share of the class's WordNet definition in its text vector
    references: str = DEFAULT_SET  # captioned reference pictures (app/references.py); "" for none
    reference_weight: float = 0.3  # share of the neighbours' captions in an image's text vector
    reference_k: int = 10
    reference_temperature: float = 0.05
    query_weight: float = 0.3  # text queries: weight of the look of their reference pictures (re-ranking)

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        data = asdict(self)
        data["templates"] = list(self.templates)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BridgeParams:
        """Inverse of to_json."""
        templates = data.get("templates", DEFAULT_TEMPLATES)
        assert isinstance(templates, list | tuple)
        return cls(
            kind=str(data.get("kind", "conse")),
            templates=tuple(str(t) for t in templates),
            top_t=int(str(data.get("top_t", 0))),
            temperature=float(str(data.get("temperature", 1.0))),
            # Indexes written before these fields existed used short names and no definitions.
            names=str(data.get("names", "short")),
            definition_weight=float(str(data.get("definition_weight", 0.0))),
            references=str(data.get("references", "")),
            reference_weight=float(str(data.get("reference_weight", 0.0))),
            reference_k=int(str(data.get("reference_k", 10))),
            reference_temperature=float(str(data.get("reference_temperature", 0.05))),
            query_weight=float(str(data.get("query_weight", 0.0))),
        )


@dataclass
class Bridge:
    """Image output → unit vector in the text encoder's space, plus a label distribution for describing."""

    params: BridgeParams
    labels: list[str]
    label_vectors: np.ndarray  # (C, D) unit rows: mean over templates of E(template.format(label))
    identity: bool = False
    logit_scale: float = 100.0
    references: ReferenceSet | None = None
    caption_vectors: np.ndarray | None = None  # (captions, D) unit rows, one per reference caption
    class_weight: float = CLASS_WEIGHT  # text queries: weight of the classes their noun names (WordNet)
    _label_tensor: torch.Tensor = field(init=False, repr=False)
    _caption_tensor: torch.Tensor | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._label_tensor = torch.from_numpy(np.ascontiguousarray(self.label_vectors, dtype=np.float32))
        self._caption_tensor = (
            None
            if self.caption_vectors is None
            else torch.from_numpy(np.ascontiguousarray(self.caption_vectors, dtype=np.float32))
        )

    def probabilities(self, output: ImageOutput) -> torch.Tensor:
        """Label distribution: softmax of the classifier, or CLIP zero-shot over the label texts."""
        if output.logits is not None:
            return torch.softmax(output.logits / self.params.temperature, dim=-1)
        image = torch.nn.functional.normalize(output.features, dim=-1)
        return torch.softmax(self.logit_scale * image @ self._label_tensor.T, dim=-1)

    def to_text_space(self, output: ImageOutput) -> np.ndarray:
        """Unit vectors comparable with text embeddings."""
        if self.identity:
            vectors = output.features
        else:
            probs = self.probabilities(output)
            if 0 < self.params.top_t < probs.shape[1]:
                top = torch.topk(probs, self.params.top_t, dim=-1)
                probs = torch.zeros_like(probs).scatter_(1, top.indices, top.values)
            vectors = torch.nn.functional.normalize(probs @ self._label_tensor, dim=-1)
            p = self.params
            if self.references is not None and self._caption_tensor is not None and p.reference_weight:
                carried = self.references.transfer(
                    output.features, self._caption_tensor, p.reference_k, p.reference_temperature
                )
                carried = torch.nn.functional.normalize(carried, dim=-1)
                vectors = (1 - p.reference_weight) * vectors + p.reference_weight * carried
        unit: np.ndarray = torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()
        return unit

    def visual_hint(self, query: np.ndarray) -> VisualHint | None:
        """What a text query (its unit embedding, before PCA) looks like, from its reference pictures."""
        if self.references is None or self._caption_tensor is None or not self.params.query_weight:
            return None
        scores = self._caption_tensor @ torch.from_numpy(np.asarray(query, dtype=np.float32))
        look = self.references.look_of(scores, self.params.reference_k, self.params.reference_temperature)
        return VisualHint(look, self.params.query_weight)

    def class_hint(self, query: str) -> ClassHint | None:
        """The ImageNet classes a text query's noun names through WordNet, when the labels are ImageNet's."""
        if not self.class_weight or tuple(self.labels) != imagenet_labels():
            return None
        hint = class_hint(query)
        return None if hint is None else replace(hint, weight=self.class_weight)

    def top_labels(self, output: ImageOutput, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most likely labels per image with their probabilities."""
        probs = self.probabilities(output)
        values, indices = torch.topk(probs, min(k, probs.shape[1]), dim=-1)
        return [
            [(self.labels[int(i)], round(float(v), 4)) for v, i in zip(row_v, row_i, strict=True)]
            for row_v, row_i in zip(values, indices, strict=True)
        ]


def text_key(
    model_id: str,
    labels: list[str],
    templates: tuple[str, ...],
    definitions: list[str] | None = None,
    definition_weight: float = 0.0,
) -> str:
    """16 hex digits naming the embeddings of these texts by this model (cache and shipped file)."""
    weight = definition_weight if definitions else 0.0
    parts = [model_id, labels, list(templates), definitions if weight else None, weight]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def text_vectors_path(model_id: str, folder: Path | None = None) -> Path:
    """Where the text embeddings that every first start would compute are shipped for a text model."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id)
    return (folder or REFERENCE_DIR) / f"text-vectors-{safe}.npz"


def shipped_text_vectors(model_id: str, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Unit rows shipped in app/data for this model and key (scripts/text_vectors.py), or None."""
    path = text_vectors_path(model_id)
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if key not in data.files or data[key].shape != shape:
                return None
            vectors = np.asarray(data[key], dtype=np.float32)
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path)
        return None
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return unit


def label_vectors(
    text: TextEncoder,
    labels: list[str],
    templates: tuple[str, ...],
    cache_dir: Path | None,
    definitions: list[str] | None = None,
    definition_weight: float = 0.0,
) -> np.ndarray:
    """Per label: mean template embedding mixed with its definition's embedding; unit rows, cached."""
    weight = definition_weight if definitions else 0.0
    key = text_key(text.model_id, labels, templates, definitions, weight)
    shipped = shipped_text_vectors(text.model_id, key, (len(labels), text.dim))
    if shipped is not None:
        return shipped
    path = cache_dir / f"labels-{key}.npy" if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = np.load(path)
            if cached.shape == (len(labels), text.dim):
                return np.asarray(cached, dtype=np.float32)
        except (OSError, ValueError):
            log.warning("ignoring unreadable label cache %s", path)
    log.info(
        "preparing the bridge once: embedding %d labels × %d templates with %s (cached in %s)",
        len(labels),
        len(templates),
        text.model_id,
        path or "memory only",
    )
    started = time.perf_counter()
    sums = np.zeros((len(labels), text.dim), dtype=np.float32)
    for template in templates:
        sums += text.encode([template.format(label) for label in labels])
    vectors: np.ndarray = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)
    if definitions and weight:
        described = text.encode(definitions)
        vectors = (1 - weight) * vectors + weight * described
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        except OSError:
            log.warning("cannot write label cache %s", path)
    log.info("prepared the label embeddings in %.1fs", time.perf_counter() - started)
    return vectors


def build_bridge(
    params: BridgeParams,
    text: TextEncoder,
    labels: list[str],
    identity: bool,
    cache_dir: Path | None,
    image_model: str = "",
    reference_dir: Path = REFERENCE_DIR,
) -> Bridge:
    """Embed the label texts (and reference captions) and assemble the bridge."""
    references = None
    if identity:  # a joint image-text space needs no reference set
        vectors = label_vectors(text, labels, ("a photo of a {}.",), cache_dir)
        params = replace(params, references="", reference_weight=0.0, query_weight=0.0)
    else:
        imagenet = tuple(labels) == imagenet_labels()  # WordNet texts exist for ImageNet classes only
        lemmas = imagenet and params.names == "lemmas"
        names = [", ".join(synonyms) for synonyms in lemma_sets()] if lemmas else labels
        definitions = list(imagenet_definitions()) if imagenet and params.definition_weight else None
        vectors = label_vectors(
            text, names, params.templates, cache_dir, definitions, params.definition_weight
        )
        if params.references and (params.reference_weight or params.query_weight):
            references = find_references(params.references, image_model, reference_dir)
            if references is None:
                log.info("no reference set %r for %s: ConSE alone", params.references, image_model or "?")
                params = replace(params, references="", reference_weight=0.0, query_weight=0.0)
    captions = label_vectors(text, references.captions, ("{}",), cache_dir) if references else None
    return Bridge(
        params=params,
        labels=labels,
        label_vectors=vectors,
        identity=identity,
        references=references,
        caption_vectors=captions,
    )
