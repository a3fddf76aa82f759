"""Request and response bodies of the API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_QUERY_CHARS = 1000
QUERY_HELP = "what to look for, in words (at most 1000 characters, not blank)"
TOP_K_HELP = "how many results to return (1 to 100)"
OFFSET_HELP = "how many of the best results to skip, for paging (0 to 10000)"
IMAGE_ID_HELP = "an indexed image's id (16 hex digits, as returned by /search)"


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


class DescribeResponse(BaseModel):
    """A one-sentence description and the labels behind it."""

    description: str
    labels: list[Label]
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
