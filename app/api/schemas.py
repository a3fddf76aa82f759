"""Request and response bodies of the API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.options import MAX_QUERY_CHARS

QUERY_HELP = "what to look for, in words (at most 1000 characters, not blank)"
TOP_K_HELP = "how many results to return (1 to 100)"
OFFSET_HELP = "how many of the best results to skip, for paging (0 to 10000)"
IMAGE_ID_HELP = "an indexed image's id (16 hex digits, as returned by /search)"

# The service's rule in the schema: a query needs a character that is not whitespace to str.split();
# spelled out because JSON Schema's (ECMA) \s and Python's disagree (\x1c-\x1f, \x85, \ufeff).
NON_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class SearchRequest(BaseModel):
    """Text search."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["a cat"], description=QUERY_HELP)
    top_k: int = Field(10, ge=1, le=100, description=TOP_K_HELP)
    offset: int = Field(0, ge=0, le=10_000, description=OFFSET_HELP)


class SearchResult(BaseModel):
    """One ranked image."""

    id: str
    score: float = Field(
        description="similarity to the query, higher first: a cosine in [-1, 1]; for a text query with a "
        "reference set, the best 200 matches mix it with how much they look like the query's reference "
        "pictures"
    )
    source: str
    width: int
    height: int
    url: str
    thumbnail_url: str
    duplicates: int = Field(0, ge=0, description="near-duplicates of this image folded into it")
    duplicate_ids: list[str] = Field(
        default_factory=list, description="ids of those near-duplicates, best ranked first"
    )


class SearchResponse(BaseModel):
    """Ranked images for a query."""

    query: str
    results: list[SearchResult]
    total: int
    took_ms: float


class DescribeRequest(BaseModel):
    """Describe an indexed image (`image_id`) or write a description from a text (`query`)."""

    model_config = ConfigDict(extra="forbid")
    image_id: str | None = Field(None, min_length=1, max_length=64, description=IMAGE_ID_HELP)
    query: str | None = Field(
        None, min_length=1, max_length=MAX_QUERY_CHARS, description="a text to write a description from"
    )


class Label(BaseModel):
    """A class the image model saw, with its probability."""

    label: str
    score: float


class EvidenceItem(BaseModel):
    """One phrase of the description and what it rests on."""

    phrase: str = Field(description="the words of the description this item backs, e.g. 'tabby cat'")
    source: str = Field(
        description="'label': a classifier (or CLIP zero-shot) label; 'kind': a WordNet hypernym shared by "
        "several labels ('dog' for three breeds); 'scene': a place label; 'reference': captions of the "
        "nearest reference pictures that agree with a label"
    )
    labels: list[str] = Field(description="the labels behind the phrase")
    probability: float = Field(description="their total probability (plus agreeing reference weight)")


class DescribeResponse(BaseModel):
    """A one-sentence description and the labels behind it."""

    description: str = Field(
        description="for an image: a sentence whose every content word comes from `evidence` (hedged with "
        "'probably' / 'or' when the models are unsure); in text mode (`query`): GENERATED text written by "
        "the language model from the query, which describes no image"
    )
    labels: list[Label]
    confidence: float | None = Field(
        None, description="probability behind the sentence's subject (0–1); null in text mode"
    )
    evidence: list[EvidenceItem] = Field(default_factory=list, description="empty in text mode")
    generated: bool = Field(False, description="true in text mode: the sentence is generated text")
    took_ms: float


class Ready(BaseModel):
    """Readiness report."""

    status: str
    profile: str | None = None
    device: str | None = None
    images: int | None = None
    generation: str | None = Field(
        None, description="the index generation served (generations/<name> in the index folder)"
    )
    detail: str | None = None
    read_key: bool = Field(False, description="whether every endpoint but /healthz needs the read key")
    warnings: list[str] = Field(
        default_factory=list, description="what an operator should know, e.g. an open network address"
    )


class ErrorBody(BaseModel):
    """Every error response."""

    detail: str
    error: str
