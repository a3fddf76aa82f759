"""What the API serves, independent of HTTP: search by text or image, describe, fetch images."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app import looks, ranking, sources
from app.catalog import PREFERENCE, Catalog
from app.describer import Describer, Evidence, Sentence, Sight, when_and_where, with_people, with_text
from app.encoders.base import torch_on_one_thread
from app.errors import BadQuery, Conflict, ImageNotFound, ImgSearchError, ModelLoading, NotReady
from app.filters import TAKEN_AT, Filters
from app.index import ImageRecord, Index
from app.labels import ClassHint
from app.lexical import LexicalHit
from app.metadata import ImageMetadata
from app.options import DATE_SORT_MIN_SCORE, Mode, Sort
from app.people_search import ServedPeople
from app.pipeline import Models, Pipeline
from app.preprocessing import VIEW_SIDE, decode, decode_sized, thumbnail
from app.query import CompoundQuery, Reading, read
from app.references import VisualHint
from app.searchers import Space
from app.settings import COLLECTION_PIXELS
from app.vectors import one_thread

log = logging.getLogger(__name__)

FUSION_WINDOW = 200  # vector candidates fused with the lexical ranking in hybrid mode
LABEL_K = 5  # labels a description response lists
LEXICAL_DEPTH = 200  # lexical matches fused in hybrid mode (lexical mode reads deeper for deep pages)
LEXICAL_THREADS = 4  # hybrid searches run their lexical side in a pool of this many threads
DATE_SORT_DEPTH = 1000  # a date sort orders at most this many of the best results above its cutoff


@dataclass
class Hit:
    """One ranked result."""

    record: ImageRecord
    score: float
    duplicate_ids: list[str] = field(default_factory=list)  # near-duplicates folded into it (app/ranking.py)
    metadata: ImageMetadata | None = None  # None for an index built before the catalog
    matched: list[str] = field(default_factory=list)  # "semantic", "name", "folder", "metadata", "text"…
    scores: dict[str, float] = field(default_factory=dict)  # the parts of `score`: "semantic", "lexical"…
    borrowed_from: list[str] = field(default_factory=list)  # ids of the named look-alikes it borrowed from

    @property
    def folder(self) -> str:
        """The folder of the image, relative to the collection ("" at its root or for a dataset)."""
        if self.metadata is not None:
            return self.metadata.folder
        parent = Path(self.record.source).parent
        return "" if self.record.source.count("#") or str(parent) == "." else parent.as_posix()

    @property
    def duplicates(self) -> int:
        """How many near-duplicates were folded into this result."""
        return len(self.duplicate_ids)


@dataclass(frozen=True)
class Order:
    """How results are ordered: by relevance or by date (`taken_at`), and the relevance cutoff.

    `min_score` keeps the results scoring at least that on the 0–1 scale; a date sort without one
    keeps those scoring at least DATE_SORT_MIN_SCORE (a date order of everything is no answer).
    """

    sort: Sort = "relevance"
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise BadQuery(f"min_score must be between 0 and 1 (the relevance scale), got {self.min_score}")
        if self.sort not in ("relevance", "newest", "oldest"):
            raise BadQuery(f"sort must be relevance, newest or oldest, got {self.sort!r}")

    @property
    def floor(self) -> float | None:
        """The cutoff in force (None: none)."""
        if self.min_score is not None:
            return self.min_score
        return None if self.sort == "relevance" else DATE_SORT_MIN_SCORE


@dataclass(frozen=True)
class SearchRequest:
    """One search: what to look for, which images may be results, how to rank and which page."""

    query: CompoundQuery
    filters: Filters = field(default_factory=Filters)
    mode: Mode = "hybrid"
    top_k: int = 10
    offset: int = 0
    understand: bool = True  # read the dates and places typed in the query (app/query.py `read`)
    order: Order = field(default_factory=Order)


@dataclass
class Found:
    """A page of results and how many images could be results."""

    hits: list[Hit]
    total: int
    understood: dict[str, Any] | None = None  # what was read from the query (None: reading off)


@dataclass(frozen=True)
class _Vector:
    """A compound query as one unit vector, the space it lives in and its visual hint."""

    vector: np.ndarray
    space: Space
    visual: VisualHint | None
    liked: list[int] = field(default_factory=list)  # rows of the like_ids, in their order
    classes: ClassHint | None = None  # the ImageNet classes a plain text query names (app/labels.py)


@dataclass
class Description:
    """A sentence, the labels it was written from, and what each of its phrases rests on."""

    text: str
    labels: list[tuple[str, float]]
    confidence: float | None = None  # probability behind the subject; None for generated text
    evidence: list[Evidence] = field(default_factory=list)
    generated: bool = False  # text mode: written by the language model from a query, not from an image


def _say_labels(index: Index, models: Models) -> None:
    """Log whose class labels the index was built with when the service's encoder gives others."""
    built, now = index.meta.models.get("labels", ""), models.image.label_model
    if built != now:
        image = index.meta.models.get("image", "?")
        log.warning(
            "index labelled by %s, served with %s: it serves as built (text search ranks its stored "
            "vectors); `imgsearch build --update` re-encodes it with the new labels",
            f"{built}'s" if built else f"{image}'s own classes",
            f"{now}'s" if now else f"{models.image.model_id}'s own classes",
        )


class SearchService:
    """An opened index, its catalog and the models that match it; `close` releases them all."""

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
        _say_labels(index, models)
        self.index = index
        self.catalog = Catalog(index)
        self.people = ServedPeople.open(index, on_change=self.catalog.forget)  # none without --faces
        self.catalog.person_rows = self.people.rows
        # Hybrid requests run their lexical search here, beside the vector side (SQLite and faiss
        # let go of the GIL).
        self._lexical = ThreadPoolExecutor(max_workers=LEXICAL_THREADS, thread_name_prefix="lexical")
        self.pipeline = pipeline
        self.describer = Describer(models.lm, max_new_tokens, labels=pipeline.bridge.labels)
        self.max_pixels = max_pixels
        self.dedup_threshold = dedup_threshold  # visual cosine at which results fold; 0: never
        self.today: Callable[[], date] = date.today  # what "last summer" counts from (tests set it)
        self._lexical.submit(self.catalog.warm)  # places named from GPS while the first queries come

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
        """Stop its threads (after the searches under way), then release the catalog and the index."""
        self._lexical.shutdown(wait=True, cancel_futures=True)
        self.catalog.close()
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

    def view(self, record: ImageRecord) -> bytes:
        """A JPEG of the original that any browser shows, at most VIEW_SIDE px on its longest side."""
        path = self.original_path(record)
        try:
            picture = decode_sized(path.read_bytes(), COLLECTION_PIXELS, VIEW_SIDE // 2, name=path.name)[0]
        except OSError as exc:
            raise ImageNotFound(f"the original of image {record.id} is no longer available") from exc
        except ImgSearchError as exc:
            raise Conflict(f"image {record.id} cannot be shown here: {exc}") from exc
        return thumbnail(picture, VIEW_SIDE, quality=90)

    def alternates(self, record: ImageRecord) -> list[Path]:
        """Other originals of the same shot: the camera RAW files beside an indexed picture."""
        if self.index.meta.collection_root is None:  # a dataset's images have no folder
            return []
        try:
            return sources.alternates(self.original_path(record))
        except ImageNotFound:
            return []

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

    def read(self, request: SearchRequest) -> Reading | None:
        """The dates and places typed in the query (None: reading is off, nothing is typed, or the
        index has no catalog to filter by)."""
        if not request.understand or not request.query.positive or not self.catalog.present:
            return None
        places, names = self.catalog.places(), self.people.names()
        return read(request.query, request.filters, self.today(), places, request.mode == "semantic", names)

    def search(self, request: SearchRequest) -> Found:
        """Images for a compound query among the rows the filters allow, ranked as the mode says;
        the dates and places typed in it read first (`read`)."""
        reading = self.read(request)
        if reading is None:
            return _showing(self._search(request, None), request.filters)
        prefer = (reading.place, PREFERENCE if reading.preferred else 1.0) if reading.place else None
        found = self._search(replace(request, query=reading.query, filters=reading.filters), prefer)
        found.understood = reading.to_json()
        return _showing(found, reading.filters)

    def _search(self, request: SearchRequest, prefer: tuple[str, float] | None) -> Found:
        """`search` once read: `prefer` is a place whose rows gain in the fusion, with its coverage."""
        allowed = self.catalog.selection(request.filters)
        mask, rows = (None, None) if allowed is None else (allowed.mask, allowed.rows)
        total = self.index.count if rows is None else len(rows)
        text = " ".join(part.text for part in request.query.positive)
        if request.mode == "lexical":
            if not text:
                raise BadQuery("mode lexical needs a query text (like_ids alone search by meaning)")
            for image_id in request.query.like_ids:  # unused by words, but an unknown id is still a 404
                self._like(image_id)
            cut = DATE_SORT_DEPTH if request.order.floor is not None else 0
            depth = max(LEXICAL_DEPTH, 4 * (request.offset + request.top_k), cut)
            lexical = self.catalog.with_places(
                self.catalog.search_text(text, depth, mask), text, mask, [], depth, prefer
            )
            ranked: ranking.Ranking = ranking.LexicalCandidates([(hit.row, hit.score) for hit in lexical])
            return self._found(request, ranked, total, lexical, set(), lambda _, score: {"lexical": score})
        words = None  # hybrid: the lexical search runs beside the query's encoding and vector search
        if request.mode == "hybrid" and text and self.catalog.present:
            words = self._lexical.submit(self.catalog.search_text, text, LEXICAL_DEPTH, mask)
        vector = self.vector_of(request.query)
        found = ranking.candidates(
            self.index,
            vector.vector,
            space=vector.space,
            visual=vector.visual,
            rows=rows,
            classes=vector.classes,
        )
        lexical, borrowed = [], {}
        if words is not None:
            with one_thread():  # the vector search, on one core while the lexical one has the other
                head = [row for row, _ in found.head(FUSION_WINDOW)]
            lexical = self.catalog.with_places(words.result(), text, mask, head, LEXICAL_DEPTH, prefer)
            borrowed = self.catalog.borrowed_parts(text, mask)  # words lent by named look-alikes
        if not request.query.positive and not request.query.exclude:  # more like these: they lead
            liked = np.asarray(vector.liked, dtype=np.int64)
            liked = liked if rows is None else liked[np.isin(liked, rows)]
            first = [(int(row), 1.0) for row in dict.fromkeys(liked.tolist())]
            scored = ranking.FusedCandidates(found, [], FUSION_WINDOW)
            pinned = ranking.Pinned(first, scored)
            return self._found(request, pinned, total, [], None, _semantic_parts)
        fused = ranking.FusedCandidates(
            found,
            [(hit.row, hit.score, hit.coverage, hit.weak, hit.own) for hit in lexical],
            FUSION_WINDOW,
            borrowed,
        )
        parts = _fused_parts(fused) if request.mode == "hybrid" else _semantic_parts
        semantic = fused.from_vector if lexical or borrowed else None
        lent = {row: self.catalog.borrowed().lent[row].lenders for row in borrowed}
        return self._found(request, fused, total, lexical, semantic, parts, lent)

    def _found(
        self,
        request: SearchRequest,
        ranked: ranking.Ranking,
        total: int,
        lexical: list[LexicalHit],
        semantic: set[int] | None,
        parts: Parts,
        lent: Mapping[int, tuple[int, ...]] | None = None,
    ) -> Found:
        """The requested page (cut and ordered as `request.order` says) and how many could be results;
        `lent`: the rows raised by borrowed words, with the rows they borrowed from."""
        results, cut = self._ordered(ranked, request.top_k, request.offset, request.order)
        hits = self._page(results, lexical, semantic, parts)
        for hit, result in zip(hits, results, strict=True):
            if lent and result.row in lent:
                hit.matched.append("similar_named")
                hit.borrowed_from = [record.id for record in self.index.records(list(lent[result.row]))]
        return Found(hits, total if cut is None else cut)

    def _ordered(
        self, ranked: ranking.Ranking, top_k: int, offset: int, order: Order
    ) -> tuple[list[ranking.Ranked], int | None]:
        """The page of a ranking in relevance or date order, and how many pass the cutoff (None: none)."""
        floor, threshold, features = order.floor, self.dedup_threshold, self.index.features
        cut = None
        if floor is not None and floor > 0:
            ranked = ranking.AtLeast(ranked, floor)
            cut = len(ranked.head(DATE_SORT_DEPTH))
        if order.sort == "relevance":
            return ranking.page(ranked, top_k, offset, threshold, features), cut
        taken = self.catalog.columns().values(TAKEN_AT)  # Conflict (409) for an index without a catalog
        everything = ranking.page(ranked, DATE_SORT_DEPTH, 0, threshold, features)
        moments = taken[[result.row for result in everything]]
        dated, when = ~np.isnat(moments), moments.astype(np.int64)
        key = when if order.sort == "oldest" else -when
        # Undated images last; equal dates keep the relevance order (a stable sort).
        placed = np.lexsort((np.arange(len(everything)), key, ~dated))
        return [everything[int(i)] for i in placed][offset : offset + top_k], cut

    def _page(
        self,
        results: list[ranking.Ranked],
        lexical: list[LexicalHit],
        semantic: set[int] | None,
        parts: Parts,
    ) -> list[Hit]:
        """Each result's record, metadata, the signals that matched it and the parts of its score."""
        hits = self._hits(results)
        fields = {hit.row: hit.matched for hit in lexical}
        stored = self.catalog.metadata([result.row for result in results])
        for hit, result in zip(hits, results, strict=True):
            hit.metadata = stored.get(result.row)
            signals = ["semantic"] if semantic is None or result.row in semantic else []
            hit.matched = signals + list(fields.get(result.row, ()))
            hit.scores = {name: round(value, 6) for name, value in parts(result.row, result.score).items()}
        return hits

    def vector_of(self, query: CompoundQuery) -> _Vector:
        """rclip-style arithmetic: normalise(Σ w·part − Σ w·excluded + Σ liked images' stored vectors).

        Only like_ids: the mean of their visual features ("more like these", searched by look).
        A single text keeps its visual and class hints (the re-ranks of plain text search).
        """
        liked = [self._like(image_id) for image_id in query.like_ids]
        if not query.positive and not query.exclude:
            features = np.stack([np.asarray(self.index.features[row], dtype=np.float32) for row in liked])
            return _Vector(_unit(features.sum(axis=0)), "visual", None, liked)
        total = np.zeros(self.index.dim, dtype=np.float32)
        encoded = None
        for part in query.positive:
            encoded = self.pipeline.encode_query(part.text)
            total += part.weight * encoded.vector
        for part in query.exclude:
            total -= part.weight * self.pipeline.encode_query(part.text).vector
        for row in liked:
            total += _unit(np.asarray(self.index.vectors[row], dtype=np.float32))
        if len(query.positive) == 1 and not query.exclude and not liked and encoded is not None:
            return _Vector(encoded.vector, "text", encoded.visual, classes=encoded.classes)  # plain text
        return _Vector(_unit(total), "text", None, liked)

    def _like(self, image_id: str) -> int:
        """The vector row of an indexed image named in like_ids; ImageNotFound (404) naming like_ids."""
        try:
            return self.index.get(image_id).row
        except ImageNotFound as exc:
            raise ImageNotFound(f"like_ids: {exc}") from exc

    def search_text(self, query: str, top_k: int, offset: int = 0) -> list[Hit]:
        """The vector ranking of a text query itself, scored by the re-ranked cosine (benches, tests);
        near-duplicates folded (dedup_threshold > 0). The API's 0–1 scale is `search`'s."""
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
                classes=encoded.classes,
            )
        )

    def search_image(
        self, data: bytes, top_k: int, offset: int = 0, filters: Filters | None = None
    ) -> list[Hit]:
        """The results of `find_by_image` in relevance order."""
        return self.find_by_image(data, top_k, offset, filters).hits

    def find_by_image(
        self,
        data: bytes,
        top_k: int,
        offset: int = 0,
        filters: Filters | None = None,
        order: Order | None = None,
    ) -> Found:
        """Indexed images that look like the uploaded one, among those `filters` allow (duplicates folded),
        on the 0–1 scale, ordered as `order` says."""
        filters = filters or Filters()
        rows = self.catalog.allowed_rows(filters)
        image = decode(data, self.max_pixels)
        features = self.pipeline.image_features([image])
        found = ranking.candidates(self.index, features[0], space="visual", rows=rows)
        scored = ranking.FusedCandidates(found, [], FUSION_WINDOW)
        total = self.index.count if rows is None else len(rows)
        request = SearchRequest(CompoundQuery(), filters, "semantic", top_k, offset, order=order or Order())
        return _showing(self._found(request, scored, total, [], None, _semantic_parts), filters)

    def passing(self, filters: Filters) -> int:
        """How many images `filters` let through (all of them when none is given)."""
        found = self.catalog.selection(filters)
        return self.index.count if found is None else len(found.rows)

    def metadata(self, image_id: str) -> tuple[ImageRecord, ImageMetadata]:
        """The stored metadata of one indexed image (Conflict for an index built before the catalog)."""
        record = self.index.get(image_id)
        self.catalog.require("image metadata")
        return record, self.catalog.metadata([record.row])[record.row]

    def text_in_image(self, record: ImageRecord) -> str | None:
        """The text read in an indexed picture ("" for none); None when it was not read (OCR off, or
        the build's text stage has not reached it yet)."""
        return self.catalog.text_in_image(record.id)

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

    def _sight(self, image: Image.Image) -> Sight:
        """What a description of a decoded picture rests on: every label's probability, the nearest
        reference captions, the picture's medium and colour, its bridged vector (torch on one thread: its
        steps here are small, and a second thread costs more than it gains when the cores are busy)."""
        bridge = self.pipeline.bridge
        captions: list[tuple[str, float]] = []
        nearest = 0.0
        with torch_on_one_thread():
            encoded = self.pipeline.encode_images([image], label_k=len(bridge.labels), project=False)
            features = torch.from_numpy(encoded.features[0])
            if bridge.references is not None:
                p = bridge.params
                captions, nearest = bridge.references.near(features, p.reference_k, p.reference_temperature)
        labels = encoded.labels[0]
        return Sight(labels, captions, looks.of(image, nearest, labels), vector=encoded.vectors[0])

    def _original(self, record: ImageRecord) -> Image.Image | None:
        """The indexed file, decoded as the build decoded it; None when it is gone or has changed since."""
        try:
            data = self.original_path(record).read_bytes()
            if hashlib.sha256(data).hexdigest() != record.sha256:
                return None
            return decode_sized(data, COLLECTION_PIXELS, name=record.source)[0]
        except (OSError, ImgSearchError):
            return None

    def _stored_sight(self, record: ImageRecord) -> Sight:
        """Without the original: the labels stored at build, references near the stored features, and
        the thumbnail's medium and colour."""
        features = np.asarray(self.index.features[record.row], dtype=np.float32)
        try:
            thumbnail = decode(self.thumbnail_path(record).read_bytes())
            seen = looks.of(thumbnail, 0.0, record.labels)
        except (OSError, ImgSearchError):
            seen = ()
        return Sight(record.labels, self.reference_captions(features), seen)

    def describe_upload(self, data: bytes) -> Description:
        """Describe an uploaded image from its label distribution, reference captions, medium and colour."""
        image = decode(data, self.max_pixels)  # a bad upload is its 4xx even while the model loads
        describer = self._ready_describer()
        sight = self._sight(image)
        return self._description(describer.describe(sight), sight.labels[:LABEL_K])

    def describe_indexed(self, image_id: str) -> Description:
        """Describe an indexed image as its upload would be (its original is read again); when the
        original is gone or changed, from the labels stored at build time."""
        record = self.image(image_id)  # an unknown id is a 404 even while the model loads
        describer = self._ready_describer()
        image = self._original(record)
        sight = self._sight(image) if image is not None else self._stored_sight(record)
        sentence = with_text(describer.describe(sight), self.text_in_image(record))  # read at build time
        sentence = with_people(sentence, [person.name or "" for person in self.people.named_in(record.id)])
        known = self.catalog.metadata([record.row]).get(record.row)
        if known is not None:  # where and when, from the index only (an EXIF date, a GPS position)
            taken = known.taken_at if (known.taken_at_source or "").startswith("exif") else None
            sentence = when_and_where(sentence, known.place, taken)
        return self._description(sentence, sight.labels[:LABEL_K])

    def describe_query(self, query: str) -> Description:
        """Text mode: one sentence about a picture matching the query (it describes no image)."""
        query = " ".join(query.split())
        if not query:
            raise BadQuery("query must contain at least one non-space character")
        return Description(self._ready_describer().from_query(query), [], generated=True)

    @staticmethod
    def _description(sentence: Sentence, labels: list[tuple[str, float]]) -> Description:
        """A Description of a composed sentence."""
        return Description(sentence.text, labels, round(sentence.confidence, 4), sentence.evidence)


Parts = Callable[[int, float], dict[str, float]]  # a result's row and score → the parts of its score


def _fused_parts(fused: ranking.FusedCandidates) -> Parts:
    """Hybrid: each result's semantic, lexical and propagated parts (0 past the fused head)."""

    def parts(row: int, _: float) -> dict[str, float]:
        semantic, lexical, propagated = fused.parts.get(row, (0.0, 0.0, 0.0))
        return {"semantic": semantic, "lexical": lexical, "propagated": propagated}

    return parts


def _showing(found: Found, filters: Filters) -> Found:
    """The results, each matched by `person` when a person filter (given or read) selected them."""
    if filters.get("person") is not None:
        for hit in found.hits:
            hit.matched.append("person")
    return found


def _semantic_parts(_: int, score: float) -> dict[str, float]:
    """Meaning alone: the semantic part is the score."""
    return {"semantic": score}


def _unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1 (BadQuery when the parts cancel out)."""
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise BadQuery("the query's parts cancel each other out: nothing is left to search for")
    return (vector / norm).astype(np.float32)
