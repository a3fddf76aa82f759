"""The collection's folders, with how many images each holds directly (a front end's facet list)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.schemas import ErrorBody, FolderCount, FoldersResponse

router = APIRouter(prefix="/folders", tags=["collection"])
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorBody} for code in (409, 503)}


@router.get("", response_model=FoldersResponse, responses=ERRORS, summary="Folders and their image counts")
def folders(service: ServiceDep) -> FoldersResponse:
    """Every folder that directly holds indexed images ("" is the collection's root), by name."""
    found = service.catalog.folders()
    return FoldersResponse(folders=[FolderCount(folder=folder, count=count) for folder, count in found])
