"""People: the faces of the index grouped into people (built with --faces), their crops, names and merges."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path as PathParam, Response

from app.api.deps import PeopleDep, ServiceDep
from app.api.routes.admin import require_admin
from app.api.routes.images import ImageId
from app.api.schemas import (
    ErrorBody,
    FaceInfo,
    FacesResponse,
    Merge,
    PeopleResponse,
    PersonInfo,
    Rename,
)
from app.people import Person
from app.people_search import NO_FACES

router = APIRouter(tags=["people"])
PersonId = Annotated[
    str, PathParam(min_length=1, max_length=200, description="a person's id, as GET /people lists")
]
HINT = NO_FACES + " (imgsearch build --images FOLDER --index-dir INDEX_DIR --faces)"
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {code: {"model": ErrorBody} for code in (404, 422, 503)}
# 400: a body that is not JSON at all.
CHANGE_ERRORS: Responses = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422, 429, 503)}


def _info(person: Person) -> PersonInfo:
    """A person as the API shows it."""
    return PersonInfo(
        id=person.id,
        name=person.name,
        faces=person.faces,
        images=person.images,
        thumbnail=f"/people/{quote(person.id, safe='')}/thumbnail",
    )


@router.get("/people", response_model=PeopleResponse, responses=ERRORS, summary="The people of the index")
def people(served: PeopleDep) -> PeopleResponse:
    """Every person of the index, the one found in most images first (empty, with a hint, without faces)."""
    return PeopleResponse(
        people=[_info(person) for person in served.listed()], hint=None if served.present else HINT
    )


@router.get(
    "/people/{person_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    summary="A person's face (JPEG)",
)
def thumbnail(person_id: PersonId, served: PeopleDep) -> Response:
    """A JPEG of the face that stands for the person, cut from the original with a margin."""
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    return Response(served.thumbnail(person_id), media_type="image/jpeg", headers=headers)


@router.get(
    "/images/{image_id}/faces", response_model=FacesResponse, responses=ERRORS, summary="Faces of an image"
)
def faces(image_id: ImageId, service: ServiceDep, served: PeopleDep) -> FacesResponse:
    """The faces found in an indexed image: box, person and the detector's confidence."""
    record = service.image(image_id)  # an unknown image is a 404
    found = [
        FaceInfo(box=list(face.box), person=face.person, score=round(face.score, 4))
        for face in served.faces_of(record.id)
    ]
    return FacesResponse(faces=found, hint=None if served.present else HINT)


@router.patch(
    "/people/{person_id}",
    response_model=PersonInfo,
    responses=CHANGE_ERRORS,
    dependencies=[Depends(require_admin)],
    summary="Name a person",
)
def rename(person_id: PersonId, body: Rename, served: PeopleDep) -> PersonInfo:
    """Give a person a name (the admin key); it lasts across rebuilds."""
    return _info(served.rename(person_id, body.name))


@router.post(
    "/people/{person_id}/merge",
    response_model=PersonInfo,
    responses=CHANGE_ERRORS,
    dependencies=[Depends(require_admin)],
    summary="Merge two people",
)
def merge(person_id: PersonId, body: Merge, served: PeopleDep) -> PersonInfo:
    """Fold a person into another (the admin key): the person kept, with both one's faces."""
    return _info(served.merge(person_id, body.into))
