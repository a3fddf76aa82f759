"""A deterministic fake of app/people.py's PeopleView, and a service factory that serves it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from app.assembly import ServiceFactory
from app.errors import BadPersonChange, PersonNotFound
from app.index import Index
from app.people import Face, PeopleView, Person
from app.service import SearchService
from app.settings import Settings

# A face: the source of its image (as the index names it), its box, its score and its person's id.
FaceSpec = tuple[str, tuple[int, int, int, int], float, str | None]


class FakePeople:
    """People over given faces: names and merges kept in memory, as the real store keeps them on disk."""

    def __init__(self, ids: Mapping[str, str], faces: list[FaceSpec], names: Mapping[str, str | None]):
        self._faces = [
            Face(n, ids[source], box, score, who) for n, (source, box, score, who) in enumerate(faces)
        ]
        self.names = dict(names)
        self.into: dict[str, str] = {}

    def _owner(self, person: str | None) -> str | None:
        while person in self.into:
            person = self.into[person]
        return person

    def faces_of(self, image_id: str) -> list[Face]:
        return [replace(f, person=self._owner(f.person)) for f in self._faces if f.image_id == image_id]

    def _of(self, person_id: str) -> Person:
        mine = [f for f in self._faces if self._owner(f.person) == person_id]
        if not mine:
            raise PersonNotFound(f"no person {person_id!r}")
        images = len({f.image_id for f in mine})
        return Person(person_id, self.names.get(person_id), len(mine), images, mine[0].face_id)

    def people(self) -> list[Person]:
        kept = {owner for f in self._faces if (owner := self._owner(f.person)) is not None}
        return sorted((self._of(p) for p in kept), key=lambda p: (-p.images, p.id))

    def person(self, key: str) -> Person:
        for found in self.people():
            if found.id == key or (found.name or "").casefold() == key.casefold():
                return found
        raise PersonNotFound(f"no person has the id or name {key!r}")

    def images_of(self, person_id: str) -> frozenset[str]:
        return frozenset(f.image_id for f in self._faces if self._owner(f.person) == person_id)

    def face(self, face_id: int) -> Face:
        if not 0 <= face_id < len(self._faces):
            raise PersonNotFound(f"no face {face_id}")
        return self._faces[face_id]

    def rename(self, person_id: str, name: str) -> Person:
        if not name.strip():
            raise BadPersonChange("empty name")
        self._of(person_id)
        self.names[person_id] = name
        return self._of(person_id)

    def merge(self, person_id: str, into: str) -> Person:
        if person_id == into:
            raise BadPersonChange("into itself")
        self._of(person_id), self._of(into)
        self.into[person_id] = into
        return self._of(into)


def ids_of(index: Index) -> dict[str, str]:
    """Each indexed image's source → its id."""
    return {record.source: record.id for record in index.records(list(range(index.count)))}


def serving_people(
    factory: ServiceFactory, people_of: Callable[[dict[str, str]], PeopleView]
) -> ServiceFactory:
    """`factory`, whose services serve the people `people_of` makes from the index's ids."""

    def made(settings: Settings) -> SearchService:
        service = factory(settings)
        service.people.serve(people_of(ids_of(service.index)))
        return service

    return made
