"""Typed dependencies: shared objects reach routes through these, so tests can swap them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload

from app.api.runtime import Runtime
from app.errors import PayloadTooLarge
from app.service import SearchService
from app.settings import Settings


def get_runtime(request: Request) -> Runtime:
    """The app's runtime state."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> SearchService:
    """The warm service (503 while warming), switched to a newly built generation when there is one."""
    runtime.follow()
    return runtime.require()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[SearchService, Depends(get_service)]


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
    image: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")],
    settings: SettingsDep,
) -> bytes:
    """The multipart field `image`, read within the size limit."""
    return await read_upload(image, settings)


UploadDep = Annotated[bytes, Depends(upload_bytes)]
