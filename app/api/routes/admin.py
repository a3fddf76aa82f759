"""Admin endpoints behind IMGSEARCH_API_KEY: swap to the index now on disk without a restart."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from app.api.access import ADMIN, checked_key, key_matches
from app.api.deps import RuntimeDep, SettingsDep
from app.api.schemas import ErrorBody
from app.errors import Forbidden, Unauthorized

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The value of IMGSEARCH_API_KEY; admin endpoints answer 403 while it is unset.",
)


def require_admin(
    request: Request, settings: SettingsDep, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    """403 when no key is configured, 401 when the request's key is missing or wrong, 429 while its
    client must wait after too many wrong keys."""
    configured = settings.api_key
    if configured is None:
        raise Forbidden("admin endpoints are disabled: set IMGSEARCH_API_KEY to enable them")
    if not key or not checked_key(request, ADMIN, lambda: key_matches(key, configured)):
        raise Unauthorized("missing or wrong API key: send IMGSEARCH_API_KEY in the X-API-Key header")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class ReloadResponse(BaseModel):
    """What a reload swapped in."""

    status: str
    index_dir: str
    images: int
    previous_images: int
    took_ms: float


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={code: {"model": ErrorBody} for code in (401, 403, 409, 429, 503)},
    summary="Reload the index",
)
def reload(runtime: RuntimeDep) -> ReloadResponse:
    """Serve the index now on disk (models kept; 409 and no change when it does not fit them)."""
    # Requests in flight finish on the previous index; a missing or partial index is a 409 too.
    start = time.perf_counter()
    previous, fresh = runtime.reload()
    return ReloadResponse(
        status="reloaded",
        index_dir=str(runtime.settings.index_dir),
        images=fresh.count,
        previous_images=previous.count,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )
