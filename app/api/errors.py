"""The one place where domain errors become HTTP statuses and clear messages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    BadImage,
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
    Unauthorized,
    UnsupportedMedia,
)

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
    Forbidden: 403,
    Conflict: 409,
}


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
    """Domain error → its status."""
    assert isinstance(exc, ImgSearchError)
    response = error_response(_status_of(exc), str(exc), type(exc).__name__)
    if isinstance(exc, ModelLoading):
        response.headers["Retry-After"] = str(exc.retry_after)
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
