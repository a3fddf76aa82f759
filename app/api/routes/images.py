"""Originals, alternate originals, viewable renditions and thumbnails of indexed images, with validators."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Header, Path as PathParam, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from app.api.deps import RuntimeDep, ServiceDep
from app.api.schemas import Alternate, ErrorBody, ImageMetadataResponse, PersonRef
from app.errors import ImageNotFound
from app.formats import format_of_file, media_type, viewable
from app.index import ImageRecord
from app.service import SearchService

router = APIRouter(prefix="/images", tags=["images"])
CACHE_CONTROL = "private, max-age=31536000, immutable"  # ids are content hashes; photos are private
REVALIDATE = "private, no-cache"  # an alternate original is not hashed: asked again each time
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
VIEW_RESPONSES = {**RESPONSES, 409: {"model": ErrorBody, "description": "the original cannot be read here"}}
AlternateNumber = Annotated[int, PathParam(ge=0, le=99, description="its place in `alternates`, from 0")]


def _close(handle: BinaryIO, service: SearchService) -> None:
    """Close the sent file; as the response's background task it keeps the service's generation open."""
    handle.close()


class OpenedFileResponse(FileResponse):
    """A FileResponse (ranges, HEAD) over a file the route opened before answering: a file deleted or
    replaced while the answer is being sent cannot turn it into an error after its headers went out."""

    def __init__(self, handle: BinaryIO, path: Path, **options: Any) -> None:
        super().__init__(path, stat_result=os.fstat(handle.fileno()), **options)
        self.handle = handle

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        """The opened file (its own descriptor, from the start) instead of opening the path again."""
        duplicate = os.fdopen(os.dup(self.handle.fileno()), "rb")
        duplicate.seek(0)
        file = anyio.wrap_file(duplicate)
        try:
            yield file
        finally:
            with anyio.CancelScope(shield=True):
                await file.aclose()


def _headers(etag: str, cache_control: str = CACHE_CONTROL) -> dict[str, str]:
    """Validators and caching of a response."""
    return {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}


def _holds(etag: str, if_none_match: str | None) -> bool:
    """True when the client already holds this version."""
    return bool(if_none_match) and (
        (if_none_match or "").strip() == "*" or etag in [t.strip() for t in (if_none_match or "").split(",")]
    )


def _serve(
    path: Path,
    etag: str,
    media_type: str,
    if_none_match: str | None,
    service: SearchService,
    cache_control: str = CACHE_CONTROL,
) -> Response:
    """A file with ETag and Cache-Control, or 304 when the client already has it."""
    headers = _headers(etag, cache_control)
    if _holds(etag, if_none_match):
        return Response(status_code=304, headers=headers)
    try:  # opened here: a file deleted before is a 404, one deleted after is still sent whole
        handle = path.open("rb")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ImageNotFound("this image's file is no longer available") from exc
    return OpenedFileResponse(
        handle,
        path,
        media_type=media_type,
        headers=headers,
        background=BackgroundTask(_close, handle, service),
    )


@router.get("/{image_id}", response_class=Response, responses=RESPONSES, summary="Original image")
def original(image_id: ImageId, runtime: RuntimeDep, if_none_match: IfNoneMatch = None) -> Response:
    """The original file as indexed, sent as its format's media type (app/formats.py)."""
    service, record = runtime.locate(image_id)
    path = service.original_path(record)
    return _serve(path, f'"{record.id}"', media_type(record.format, path.name), if_none_match, service)


@router.get("/{image_id}/view", response_class=Response, responses=VIEW_RESPONSES, summary="Viewable image")
def view(image_id: ImageId, runtime: RuntimeDep, if_none_match: IfNoneMatch = None) -> Response:
    """The original when browsers show its format; else (HEIC, JPEG XL, TIFF, camera RAW) a JPEG of it."""
    service, record = runtime.locate(image_id)
    if viewable(record.format):
        return original(image_id, runtime, if_none_match)
    etag = f'"{record.id}-v"'
    if _holds(etag, if_none_match):
        return Response(status_code=304, headers=_headers(etag))
    return Response(service.view(record), media_type="image/jpeg", headers=_headers(etag))


@router.get(
    "/{image_id}/alternates/{number}",
    response_class=Response,
    responses=RESPONSES,
    summary="Alternate original",
)
def alternate(
    image_id: ImageId, number: AlternateNumber, runtime: RuntimeDep, if_none_match: IfNoneMatch = None
) -> Response:
    """Another original of the same shot (the camera RAW beside a JPEG), as it is, with its media type."""
    service, record = runtime.locate(image_id)
    found = service.alternates(record)
    if number >= len(found):
        raise ImageNotFound(f"image {record.id} has {len(found)} alternate original(s), not #{number}")
    path = found[number]
    fmt = format_of_file(path.name)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ImageNotFound("this alternate original is no longer available") from exc
    etag = f'"{record.id}-a{number}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    kind = media_type(fmt.name if fmt else None, path.name)
    return _serve(path, etag, kind, if_none_match, service, REVALIDATE)


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
    picture, as stored at build time, the place its position names and the named people in it."""
    record, meta = service.metadata(image_id)
    fields = dataclasses.asdict(meta)  # the response names the stored fields one to one
    fields["taken_at"] = meta.taken_at.isoformat(timespec="seconds") if meta.taken_at else None
    place = meta.place
    fields["place"] = place.to_dict() if place is not None else None
    fields["text_in_image"] = service.text_in_image(record)
    fields["people"] = [
        PersonRef(id=person.id, name=person.name) for person in service.people.named_in(record.id)
    ]
    return ImageMetadataResponse(
        id=record.id,
        source=record.source,
        view_url=f"/images/{record.id}/view",
        alternates=_alternates(service, record),
        **fields,
    )


def _alternates(service: SearchService, record: ImageRecord) -> list[Alternate]:
    """The alternate originals of an image, as the metadata names them."""
    found = [(path, format_of_file(path.name)) for path in service.alternates(record)]
    return [
        Alternate(
            name=path.name,
            format=fmt.name if fmt else "",
            media_type=media_type(fmt.name if fmt else None, path.name),
            url=f"/images/{record.id}/alternates/{number}",
        )
        for number, (path, fmt) in enumerate(found)
    ]
