"""Search by text (POST JSON or GET for curl) and by image (multipart upload)."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from app.api.deps import ServiceDep, SettingsDep, UploadDep, within_query_limit
from app.api.schemas import (
    NON_BLANK,
    OFFSET_HELP,
    QUERY_HELP,
    TOP_K_HELP,
    ErrorBody,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from app.errors import BadQuery, UnsupportedMedia
from app.options import MAX_QUERY_CHARS
from app.service import Hit

router = APIRouter(prefix="/search", tags=["search"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422, 503)
}


def _document_non_blank(schema: dict[str, Any]) -> None:
    """Add the non-blank rule to the query property of the JSON schema."""
    schema["properties"]["query"]["pattern"] = NON_BLANK


class SearchRequestBody(SearchRequest):
    """Text search (SearchRequest, with the non-blank rule stated in the schema)."""

    model_config = ConfigDict(json_schema_extra=_document_non_blank)

    @field_validator("top_k", "offset", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        """JSON true/false are not integers (pydantic's lax mode would read them as 1/0)."""
        if isinstance(value, bool):
            raise PydanticCustomError("int_type", "Input should be a valid integer, not a boolean")
        return value


def _media_type(request: Request) -> str:
    """The request's content type without parameters, lower-case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def json_only(request: Request) -> None:
    """415 for a body sent as anything but JSON (FastAPI reads no other content type as JSON)."""
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMedia(
            f"unsupported content type {media or 'none'!r}: send the search as application/json"
        )


def multipart_only(request: Request) -> None:
    """415 for an upload that is not multipart/form-data."""
    media = _media_type(request)
    if media != "multipart/form-data":
        raise UnsupportedMedia(
            f"unsupported content type {media or 'none'!r}: "
            "upload the image as multipart/form-data in a file field named 'image'"
        )


def utf8_query_string(request: Request) -> None:
    """422 when the query string is not UTF-8 (it would otherwise be searched as U+FFFD characters)."""
    try:
        parse_qsl(request.scope["query_string"].decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadQuery(
            "the query string is not valid UTF-8: percent-encode UTF-8 text, e.g. q=caf%C3%A9"
        ) from exc


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
                duplicates=hit.duplicates,
                duplicate_ids=hit.duplicate_ids,
            )
            for hit in hits
        ],
        total=total,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )


@router.post(
    "",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(json_only)],
    summary="Search by text",
)
def search(body: SearchRequestBody, service: ServiceDep, settings: SettingsDep) -> SearchResponse:
    """Images ranked by how well they match the text query."""
    start = time.perf_counter()
    query = within_query_limit(body.query, settings)
    hits = service.search_text(query, body.top_k, body.offset)
    return _response(body.query, hits, service.count, start)


@router.get(
    "",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(utf8_query_string)],
    summary="Search by text (GET)",
)
def search_get(
    service: ServiceDep,
    settings: SettingsDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            json_schema_extra={"pattern": NON_BLANK},
            description=QUERY_HELP,
        ),
    ],
    top_k: Annotated[int, Query(ge=1, le=100, description=TOP_K_HELP)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000, description=OFFSET_HELP)] = 0,
) -> SearchResponse:
    """Same as POST /search, as a GET for curl and links."""
    start = time.perf_counter()
    hits = service.search_text(within_query_limit(q, settings), top_k, offset)
    return _response(q, hits, service.count, start)


@router.post(
    "/image",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(multipart_only)],
    summary="Search by image",
)
def search_image(
    service: ServiceDep,
    data: UploadDep,
    top_k: Annotated[int, Form(ge=1, le=100, description=TOP_K_HELP)] = 10,
    offset: Annotated[int, Form(ge=0, le=10_000, description=OFFSET_HELP)] = 0,
) -> SearchResponse:
    """Indexed images that look like the uploaded one."""
    start = time.perf_counter()
    hits = service.search_image(data, top_k, offset)
    return _response("", hits, service.count, start)
