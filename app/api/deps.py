"""Typed dependencies: shared objects reach routes through these, so tests can swap them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload

from app.api.runtime import Runtime
from app.errors import BadQuery, PayloadTooLarge
from app.formats import FORMATS
from app.people_search import ServedPeople
from app.service import SearchService
from app.settings import Settings

# What an upload may be: every format of app/formats.py but camera RAW (LibRaw is not given strangers' bytes)
UPLOAD_HELP = f"an image file ({', '.join(fmt.name for fmt in FORMATS if not fmt.raw)}; not camera RAW)"


def get_runtime(request: Request) -> Runtime:
    """The app's runtime state."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> SearchService:
    """The warm service (503 while warming; the runtime follows new generations by itself)."""
    return runtime.require()


def get_people(service: Annotated[SearchService, Depends(get_service)]) -> ServedPeople:
    """The people of the served generation (none for an index built without --faces)."""
    return service.people


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[SearchService, Depends(get_service)]
PeopleDep = Annotated[ServedPeople, Depends(get_people)]


def within_query_limit(query: str, settings: Settings) -> str:
    """The query, or BadQuery (422) when it is longer than IMGSEARCH_MAX_QUERY_CHARS."""
    if len(query) > settings.max_query_chars:
        raise BadQuery(
            f"query is {len(query)} characters long; this service takes at most "
            f"{settings.max_query_chars} (IMGSEARCH_MAX_QUERY_CHARS)"
        )
    return query


async def read_upload(upload: StarletteUpload, settings: Settings) -> bytes:
    """Read an uploaded file, refusing more than the configured size without reading it all."""
    limit = settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(
            f"upload is {upload.size} bytes, above the limit of {settings.max_upload_mb:g} MB"
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"upload is above the limit of {settings.max_upload_mb:g} MB")
    return data


async def upload_bytes(
    image: Annotated[UploadFile, File(description=UPLOAD_HELP)],
    settings: SettingsDep,
) -> bytes:
    """The multipart field `image`, read within the size limit."""
    return await read_upload(image, settings)


UploadDep = Annotated[bytes, Depends(upload_bytes)]
