"""People: the faces of an index grouped into people, with ids and names that last across builds.

The faces themselves are found, aligned and described by the faces build stage (app/face_stage.py,
opt-in: `imgsearch build --faces`) and stored inside the index; this module groups them into people
and keeps the names and merges a user gave beside the generations, so they survive every rebuild.
The API, the CLI and search read people only through `PeopleView` (tests give fakes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Face:
    """One face found in one indexed image."""

    face_id: int  # unique within the served generation
    image_id: str
    box: tuple[int, int, int, int]  # x, y, width, height in the original image's pixels
    score: float  # the detector's confidence
    person: str | None  # the id of the person it belongs to; None while it is in no person


@dataclass(frozen=True)
class Person:
    """A group of faces of one person; unnamed until a user names it."""

    id: str  # stable across `--update`, rebuilds and the re-detection of its faces
    name: str | None
    faces: int
    images: int
    thumbnail_face: int  # the face_id whose crop stands for the person


class PeopleView(Protocol):
    """What the service reads of the people of the served index (one generation + the names store)."""

    def people(self) -> list[Person]:
        """Every person, largest (most images) first; merged people appear once, under the id kept."""
        ...

    def person(self, key: str) -> Person:
        """The person with this id or name (case-insensitive); PersonNotFound otherwise."""
        ...

    def faces_of(self, image_id: str) -> list[Face]:
        """The faces found in this image (empty when none or not read)."""
        ...

    def images_of(self, person_id: str) -> frozenset[str]:
        """The ids of the images in which this person's faces were found."""
        ...

    def face(self, face_id: int) -> Face:
        """One face by its id (for its crop); PersonNotFound when the generation has no such face."""
        ...

    def rename(self, person_id: str, name: str) -> Person:
        """Name a person (kept beside the generations); BadPersonChange for an empty name."""
        ...

    def merge(self, person_id: str, into: str) -> Person:
        """Fold one person into another (kept beside the generations); BadPersonChange into itself."""
        ...


def open_people(index_dir: Path, generation: Path) -> PeopleView | None:
    """The people of the generation `generation` of the index at `index_dir`; None when it holds no faces
    (built without `--faces`)."""
    raise NotImplementedError("app/face_stage.py and the grouping land with issue 27")
