"""Search by text (POST JSON or GET for curl) and by image (multipart upload)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.api.deps import ServiceDep, SettingsDep, UploadDep, within_query_limit
from app.api.schemas import (
    MIN_SCORE_HELP,
    MODE_HELP,
    NON_BLANK,
    OFFSET_HELP,
    QUERY_HELP,
    SORT_HELP,
    TOP_K_HELP,
    UNDERSTAND_HELP,
    ErrorBody,
    FilterInfo,
    FiltersResponse,
    ImageId,
    QueryText,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Understood,
    filter_type,
)
from app.errors import BadQuery, UnsupportedMedia
from app.filters import FILTERS, Filters
from app.options import MAX_QUERY_CHARS, Mode, Sort
from app.query import MAX_PARTS, CompoundQuery
from app.service import Found, Hit, Order, SearchRequest as Search
from app.settings import Settings

router = APIRouter(prefix="/search", tags=["search"])
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

    @field_validator("top_k", "offset", "min_score", mode="before")
    @classmethod
    def _no_booleans(cls, value: object, info: ValidationInfo) -> object:
        """JSON true/false are not integers (pydantic's lax mode would read them as 1/0)."""
        if isinstance(value, bool):
            what = "a number" if info.field_name == "min_score" else "a valid integer"
            raise PydanticCustomError("int_type", f"Input should be {what}, not a boolean")
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


def filter_parameters(where: Callable[..., Any]) -> Callable[..., Awaitable[Filters]]:
    """A dependency taking every declared filter (app/filters.py) as a parameter named by its `param`:
    `Query` for GET /search, `Form` for POST /search/image. A bad value is a 422 naming that parameter.

    An empty form field is no filter; in a query string an empty value is refused by its type (a
    date or nothing: one query string cannot tell `before=` from a list)."""

    async def filters(**given: object) -> Filters:  # quick, no I/O: no thread pool hop for it
        return Filters.of(given, naming="param")

    parameters = [
        inspect.Parameter(
            spec.param,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=filter_type(spec, where(description=spec.help, **spec.limits)),
        )
        for spec in FILTERS
    ]
    made: Any = filters  # FastAPI reads a dependency's parameters from its signature
    made.__signature__ = inspect.Signature(parameters, return_annotation=Filters)
    return filters


QueryFilters = Annotated[Filters, Depends(filter_parameters(Query))]
FormFilters = Annotated[Filters, Depends(filter_parameters(Form))]


def _result(hit: Hit) -> SearchResult:
    """One result's body."""
    taken = hit.metadata.taken_at if hit.metadata is not None else None
    return SearchResult(
        id=hit.record.id,
        score=round(min(max(hit.score, 0.0), 1.0), 6),
        scores=hit.scores,
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
        borrowed_from=hit.borrowed_from,
    )


def _response(query: str, hits: list[Hit], total: int, start: float) -> SearchResponse:
    """Build the response body."""
    return SearchResponse(
        query=query,
        results=[_result(hit) for hit in hits],
        total=total,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )


def _search(body: SearchRequest, settings: Settings, filters: Filters) -> Search:
    """The service's request from the API's: query parsed (BadQuery: 422), filters already checked."""
    for text in [body.query or "", *body.exclude]:
        within_query_limit(text, settings)
    if body.query is not None and not body.query.strip() and not body.like_ids:
        raise BadQuery("query must contain at least one non-space character")
    compound = CompoundQuery.build(body.query, body.exclude, body.like_ids)
    order = Order(body.sort, body.min_score)
    return Search(compound, filters, body.mode, body.top_k, body.offset, body.understand, order)


def _found(body: SearchRequest, found: Found, start: float) -> SearchResponse:
    """The response to a text search, with what was read from its words."""
    response = _response(body.query or "", found.hits, found.total, start)
    if found.understood is not None:
        response.understood = Understood.model_validate(found.understood)
    return response


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
    filters = Filters.parse(**body.filters.model_dump(exclude_none=True))
    return _found(body, service.search(_search(body, settings, filters)), start)


@router.get(
    "",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(utf8_query_string)],
    summary="Search by text (GET)",
)
def search_get(
    filters: QueryFilters,
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
    sort: Annotated[Sort, Query(description=SORT_HELP)] = "relevance",
    min_score: Annotated[float | None, Query(ge=0.0, le=1.0, description=MIN_SCORE_HELP)] = None,
    exclude: Annotated[
        list[QueryText] | None,
        Query(alias="not", max_length=MAX_PARTS, description="a text to move away from (repeatable)"),
    ] = None,
    like: Annotated[
        list[ImageId] | None,
        Query(max_length=MAX_PARTS, description="an indexed image's id to look like (repeatable)"),
    ] = None,
    understand: Annotated[bool, Query(description=UNDERSTAND_HELP)] = True,
) -> SearchResponse:
    """Same as POST /search, as a GET for curl and links: each filter is a parameter of its own."""
    start = time.perf_counter()
    try:
        body = SearchRequest(
            query=q,
            top_k=top_k,
            offset=offset,
            mode=mode,
            sort=sort,
            min_score=min_score,
            exclude=exclude or [],
            like_ids=like or [],
            understand=understand,
        )
    except ValidationError as exc:  # a blank or overlong `not` or `like`
        error = exc.errors()[0]
        where = {"exclude": "not", "like_ids": "like"}.get(str(error["loc"][0]), str(error["loc"][0]))
        raise BadQuery(f"{where}: {error['msg']}") from None
    return _found(body, service.search(_search(body, settings, filters)), start)


@router.post(
    "/image",
    response_model=SearchResponse,
    responses=ERRORS,
    dependencies=[Depends(multipart_only)],
    summary="Search by image",
)
def search_image(
    filters: FormFilters,
    service: ServiceDep,
    data: UploadDep,
    top_k: Annotated[int, Form(ge=1, le=100, description=TOP_K_HELP)] = 10,
    offset: Annotated[int, Form(ge=0, le=10_000, description=OFFSET_HELP)] = 0,
    sort: Annotated[Sort, Form(description=SORT_HELP)] = "relevance",
    # A form field is a number or absent (no null in a form), as the filters' fields are declared.
    min_score: Annotated[float, Form(ge=0.0, le=1.0, description=MIN_SCORE_HELP)] = None,  # type: ignore[assignment]  # noqa: RUF013
) -> SearchResponse:
    """Indexed images that look like the uploaded one, among those the filters (form fields) allow."""
    start = time.perf_counter()
    found = service.find_by_image(data, top_k, offset, filters, Order(sort, min_score))
    return _response("", found.hits, found.total, start)


@router.get("/filters", response_model=FiltersResponse, summary="The filters a search takes")
def filters_taken() -> FiltersResponse:
    """Every filter: its key in POST /search's `filters`, its parameter, its option and its control."""
    return FiltersResponse(filters=[FilterInfo.model_validate(spec) for spec in FILTERS])
