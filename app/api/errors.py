"""The one place where domain errors become HTTP statuses and clear messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from app.errors import (
    BadImage,
    BadPersonChange,
    BadQuery,
    Conflict,
    Forbidden,
    ImageNotFound,
    ImgSearchError,
    IndexMismatch,
    IndexUnavailable,
    ModelLoading,
    NotReady,
    PayloadTooLarge,
    PersonNotFound,
    TooManyAttempts,
    Unauthorized,
    UnsupportedMedia,
)
from app.settings import Settings

log = logging.getLogger(__name__)

STATUS: dict[type[ImgSearchError], int] = {
    ImageNotFound: 404,
    BadImage: 400,
    UnsupportedMedia: 415,
    PayloadTooLarge: 413,
    BadQuery: 422,
    NotReady: 503,
    ModelLoading: 503,
    IndexUnavailable: 503,
    IndexMismatch: 503,
    Unauthorized: 401,
    TooManyAttempts: 429,
    Forbidden: 403,
    Conflict: 409,
    PersonNotFound: 404,
    BadPersonChange: 422,
}


# An absolute path left in a message (not part of a URL or of a relative path such as application/json).
# A trailing '.' or ':' ends the sentence, not the path.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"(),;]*[^\s'\"(),;.:]")
SERVER_PATH = "[server path]"


def is_url_path(text: str, routes: Sequence[BaseRoute]) -> bool:
    """Whether the text is a path this app answers (`/describe`, `/images/{id}`…), as a message names it."""
    scope = {"type": "http", "path": text, "method": "GET", "root_path": ""}
    return any(route.matches(scope)[0] is not Match.NONE for route in routes)


def public_detail(text: str, settings: Settings, routes: Sequence[BaseRoute] = ()) -> str:
    """The message without server paths: configured folders by their variable, any other path elided.

    The app's own URL paths among `routes` stay: they are what the message tells the client to call.
    """
    named = [(settings.index_dir, "IMGSEARCH_INDEX_DIR"), (settings.cache_dir, "IMGSEARCH_CACHE_DIR")]
    if settings.model_dir is not None:
        named.append((settings.model_dir, "IMGSEARCH_MODEL_DIR"))
    spellings = [(str(form), name) for path, name in named for form in {path, Path(path).absolute()}]
    for spelling, name in sorted(spellings, key=lambda pair: -len(pair[0])):
        if spelling not in {"", "."}:
            text = text.replace(spelling, name)
    return ABSOLUTE_PATH.sub(lambda m: m[0] if is_url_path(m[0], routes) else SERVER_PATH, text)


def error_response(status: int, detail: str, error: str) -> JSONResponse:
    """JSON error body used by every handler."""
    return JSONResponse({"detail": detail, "error": error}, status_code=status)


def _status_of(exc: ImgSearchError) -> int:
    """Most specific mapping for the error's class."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Domain error → its status; server paths stay in the log, out of the answer."""
    assert isinstance(exc, ImgSearchError)
    status = _status_of(exc)
    if status >= 500:
        log.warning("%s %s answered %d: %s", request.method, request.url.path, status, exc)
    detail = public_detail(str(exc), request.app.state.runtime.settings, request.app.router.routes)
    response = error_response(status, detail, type(exc).__name__)
    retry_after = getattr(exc, "retry_after", None)  # ModelLoading, TooManyAttempts
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _describe(error: dict[str, Any]) -> str:
    """`field: message`; a JSON syntax error names the body and the character where parsing stopped."""
    if error["type"] == "json_invalid":
        return f"body: not valid JSON (parsing stopped at character {error['loc'][-1]})"
    return f"{'.'.join(error['loc'][1:] or error['loc'])}: {error['msg']}"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line plus the field errors (inputs left out: they may be bytes)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]
    summary = "; ".join(_describe(e) for e in errors) or "invalid request"
    return JSONResponse(
        {"detail": f"invalid request: {summary}", "error": "ValidationError", "errors": errors},
        status_code=422,
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (404 for unknown paths, 405…) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(exc.status_code, str(exc.detail), "HTTPError")
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: log the traceback, answer without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; the incident was logged", type(exc).__name__)


def install(app: FastAPI) -> None:
    """Register all handlers."""
    app.add_exception_handler(ImgSearchError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
