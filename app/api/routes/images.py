"""Originals and thumbnails of indexed images, with validators for caching."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Path as PathParam, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from app.api.deps import RuntimeDep, ServiceDep
from app.api.schemas import ErrorBody, ImageMetadataResponse
from app.errors import ImageNotFound
from app.formats import media_type
from app.service import SearchService

router = APIRouter(prefix="/images", tags=["images"])
CACHE_CONTROL = "private, max-age=31536000, immutable"  # ids are content hashes; photos are private
ImageId = Annotated[str, PathParam(max_length=64, description="16 hex digits, as returned by /search")]
IfNoneMatch = Annotated[
    str | None, Header(description="ETag(s) the client already holds: 304 without a body when one matches")
]
RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"image/*": {}}},
    304: {"description": "not modified"},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


def _keep(service: SearchService) -> None:
    """Nothing: as the response's background task it keeps the service's generation open until sent."""


def _serve(
    path: Path, etag: str, media_type: str, if_none_match: str | None, service: SearchService
) -> Response:
    """A file with ETag and Cache-Control, or 304 when the client already has it."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if if_none_match and (
        if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]
    ):
        return Response(status_code=304, headers=headers)
    try:  # stat here: a file deleted since the lookup is a 404, not FileResponse's RuntimeError (500)
        found = os.stat(path)
    except FileNotFoundError as exc:
        raise ImageNotFound("this image's file is no longer available") from exc
    return FileResponse(
        path,
        media_type=media_type,
        headers=headers,
        background=BackgroundTask(_keep, service),
        stat_result=found,
    )


@router.get("/{image_id}", response_class=Response, responses=RESPONSES, summary="Original image")
def original(image_id: ImageId, runtime: RuntimeDep, if_none_match: IfNoneMatch = None) -> Response:
    """The original file as indexed, sent as its format's media type (app/formats.py)."""
    service, record = runtime.locate(image_id)
    path = service.original_path(record)
    return _serve(path, f'"{record.id}"', media_type(record.format), if_none_match, service)


@router.get("/{image_id}/thumbnail", response_class=Response, responses=RESPONSES, summary="Thumbnail (JPEG)")
def thumbnail(image_id: ImageId, runtime: RuntimeDep, if_none_match: IfNoneMatch = None) -> Response:
    """A JPEG whose longest side is at most 256 px."""
    service, record = runtime.locate(image_id)
    return _serve(service.thumbnail_path(record), f'"{record.id}-t"', "image/jpeg", if_none_match, service)


@router.get(
    "/{image_id}/metadata",
    response_model=ImageMetadataResponse,
    responses={code: {"model": ErrorBody} for code in (404, 409, 422, 503)},
    summary="Stored metadata",
)
def metadata(image_id: ImageId, service: ServiceDep) -> ImageMetadataResponse:
    """Folder, name, size, date, camera, position, the text the file carries and the text read in the
    picture, as stored at build time."""
    record, meta = service.metadata(image_id)
    fields = dataclasses.asdict(meta)  # the response names the stored fields one to one
    fields["taken_at"] = meta.taken_at.isoformat(timespec="seconds") if meta.taken_at else None
    fields["text_in_image"] = service.text_in_image(record)
    return ImageMetadataResponse(id=record.id, source=record.source, **fields)
