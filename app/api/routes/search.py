"""Search by text (POST JSON or GET for curl) and by image (multipart upload)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Query

from app.api.deps import ServiceDep, UploadDep
from app.api.schemas import MAX_QUERY_CHARS, ErrorBody, SearchRequest, SearchResponse, SearchResult
from app.service import Hit

router = APIRouter(prefix="/search", tags=["search"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422, 503)
}


def _response(query: str, hits: list[Hit], total: int, start: float) -> SearchResponse:
    """Build the response body."""
    return SearchResponse(
        query=query,
        results=[
            SearchResult(
                id=hit.record.id,
                score=round(hit.score, 6),
                source=hit.record.source,
                width=hit.record.width,
                height=hit.record.height,
                url=f"/images/{hit.record.id}",
                thumbnail_url=f"/images/{hit.record.id}/thumbnail",
            )
            for hit in hits
        ],
        total=total,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )


@router.post("", response_model=SearchResponse, responses=ERRORS)
def search(body: SearchRequest, service: ServiceDep) -> SearchResponse:
    """Images ranked by how well they match the text query."""
    start = time.perf_counter()
    hits = service.search_text(body.query, body.top_k, body.offset)
    return _response(body.query, hits, service.index.count, start)


@router.get("", response_model=SearchResponse, responses=ERRORS)
def search_get(
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    top_k: Annotated[int, Query(ge=1, le=100)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> SearchResponse:
    """Same as POST /search, as a GET for curl and links."""
    start = time.perf_counter()
    return _response(q, service.search_text(q, top_k, offset), service.index.count, start)


@router.post("/image", response_model=SearchResponse, responses=ERRORS)
def search_image(
    service: ServiceDep,
    data: UploadDep,
    top_k: Annotated[int, Form(ge=1, le=100)] = 10,
    offset: Annotated[int, Form(ge=0, le=10_000)] = 0,
) -> SearchResponse:
    """Indexed images that look like the uploaded one."""
    start = time.perf_counter()
    hits = service.search_image(data, top_k, offset)
    return _response("", hits, service.index.count, start)
