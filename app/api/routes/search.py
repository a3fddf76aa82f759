"""Search by text (POST JSON or GET for curl) and by image (multipart upload)."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from app.api.deps import ServiceDep, SettingsDep, UploadDep, within_query_limit
from app.api.schemas import (
    DATE_HELP,
    DAY_PATTERN,
    MAX_PARTS,
    MODE_HELP,
    NON_BLANK,
    OFFSET_HELP,
    QUERY_HELP,
    TOP_K_HELP,
    ErrorBody,
    ImageId,
    QueryText,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from app.errors import BadQuery, UnsupportedMedia
from app.options import MAX_QUERY_CHARS, Mode
from app.query import CompoundQuery, Filters
from app.service import Found, Hit, SearchRequest as Search
from app.settings import Settings

router = APIRouter(prefix="/search", tags=["search"])
# A date in the query string; empty is no bound (how a form, or a client sending null, leaves it out).
# A date or nothing at all: an empty `before=` is a 422 (one query string cannot tell it from a list).
DAY: dict[str, Any] = {"pattern": DAY_PATTERN, "json_schema_extra": {"format": "date"}}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 415, 422, 503)
}


def _document_non_blank(schema: dict[str, Any]) -> None:
    """Add the non-blank rule to the query property of the JSON schema."""
    query = schema["properties"]["query"]
    for option in query.get("anyOf", [query]):
        if option.get("type") == "string":
            option["pattern"] = NON_BLANK


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


def _result(hit: Hit) -> SearchResult:
    """One result's body."""
    taken = hit.metadata.taken_at if hit.metadata is not None else None
    return SearchResult(
        id=hit.record.id,
        score=round(hit.score, 6),
        source=hit.record.source,
        width=hit.record.width,
        height=hit.record.height,
        url=f"/images/{hit.record.id}",
        thumbnail_url=f"/images/{hit.record.id}/thumbnail",
        duplicates=hit.duplicates,
        duplicate_ids=hit.duplicate_ids,
        taken_at=taken.isoformat(timespec="seconds") if taken is not None else None,
        folder=hit.folder,
        matched=hit.matched,
    )


def _response(query: str, hits: list[Hit], total: int, start: float) -> SearchResponse:
    """Build the response body."""
    return SearchResponse(
        query=query,
        results=[_result(hit) for hit in hits],
        total=total,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )


def _search(body: SearchRequest, settings: Settings) -> Search:
    """The service's request from the API's: query parsed, filters validated (BadQuery: 422)."""
    for text in [body.query or "", *body.exclude]:
        within_query_limit(text, settings)
    if body.query is not None and not body.query.strip() and not body.like_ids:
        raise BadQuery("query must contain at least one non-space character")
    given = body.filters
    filters = Filters.parse(
        given.path_prefix,
        given.taken_after,
        given.taken_before,
        given.formats,
        given.min_width,
        given.min_height,
        given.has_gps,
    )
    compound = CompoundQuery.build(body.query, body.exclude, body.like_ids)
    return Search(compound, filters, body.mode, body.top_k, body.offset)


def _found(body: SearchRequest, found: Found, start: float) -> SearchResponse:
    """The response to a text search."""
    return _response(body.query or "", found.hits, found.total, start)


@router.post(
    "",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(json_only)],
    summary="Search by text",
)
def search(body: SearchRequestBody, service: ServiceDep, settings: SettingsDep) -> SearchResponse:
    """Images ranked by how well they match the query, among those the filters allow."""
    start = time.perf_counter()
    return _found(body, service.search(_search(body, settings)), start)


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
        str | None,
        Query(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            json_schema_extra={"pattern": NON_BLANK},
            description=QUERY_HELP + "; `a + b - c` adds and subtracts parts; optional with `like`",
        ),
    ] = None,
    top_k: Annotated[int, Query(ge=1, le=100, description=TOP_K_HELP)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000, description=OFFSET_HELP)] = 0,
    mode: Annotated[Mode, Query(description=MODE_HELP)] = "hybrid",
    folder: Annotated[str | None, Query(max_length=4096, description="only this folder and below")] = None,
    after: Annotated[str | None, Query(description="taken on or after: " + DATE_HELP, **DAY)] = None,
    before: Annotated[str | None, Query(description="taken on or before: " + DATE_HELP, **DAY)] = None,
    exclude: Annotated[
        list[QueryText] | None,
        Query(alias="not", max_length=MAX_PARTS, description="a text to move away from (repeatable)"),
    ] = None,
    like: Annotated[
        list[ImageId] | None,
        Query(max_length=MAX_PARTS, description="an indexed image's id to look like (repeatable)"),
    ] = None,
) -> SearchResponse:
    """Same as POST /search, as a GET for curl and links."""
    start = time.perf_counter()
    try:
        body = SearchRequest(
            query=q,
            top_k=top_k,
            offset=offset,
            mode=mode,
            filters=SearchFilters(path_prefix=folder, taken_after=after, taken_before=before),
            exclude=exclude or [],
            like_ids=like or [],
        )
    except ValidationError as exc:  # a blank or overlong `not` or `like`
        error = exc.errors()[0]
        where = {"exclude": "not", "like_ids": "like"}.get(str(error["loc"][0]), str(error["loc"][0]))
        raise BadQuery(f"{where}: {error['msg']}") from None
    return _found(body, service.search(_search(body, settings)), start)


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
    folder: Annotated[str, Form(max_length=4096, description="only this folder and below")] = "",
    after: Annotated[str, Form(description="taken on or after: " + DATE_HELP, **DAY)] = "",
    before: Annotated[str, Form(description="taken on or before: " + DATE_HELP, **DAY)] = "",
) -> SearchResponse:
    """Indexed images that look like the uploaded one, among those the filters allow."""
    start = time.perf_counter()
    filters = Filters.parse(path_prefix=folder, taken_after=after, taken_before=before)
    hits = service.search_image(data, top_k, offset, None if filters.is_empty else filters)
    return _response("", hits, service.count, start)
