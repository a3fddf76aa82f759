"""The people of the served generation as search and the API read them, over app/people.py's `PeopleView`.

An index built without `--faces` has no people: the list is empty, a person is not found, and the
`person` filter is a Conflict (409) saying how to find faces. What the served view says about a
person is asked of it each time (names and merges change it); the rows of a person filter and the
names read in queries are recomputed after each change (`on_change` drops the kept selections).
"""

from __future__ import annotations

import hashlib
import io
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.errors import BadPersonChange, BadQuery, Conflict, ImageNotFound, ImgSearchError, PersonNotFound
from app.filters import NO_PEOPLE
from app.index import Index
from app.names import NameMatcher
from app.people import MAX_NAME as NAME_LENGTH, Face, PeopleView, Person, open_people
from app.preprocessing import decode_sized
from app.settings import COLLECTION_PIXELS

log = logging.getLogger(__name__)

NO_FACES = "this index has no people: faces are found only when it is built with --faces"
FACE_PAD = 0.3  # a face crop reaches this share of the face's box beyond each side
CROP_SIDE = 256  # a face crop's longest side at most, in pixels
CROPS_KEPT = 256  # face crops kept (JPEG bytes, a few kB each)
CHUNK = 500  # ids per SELECT … IN (…)


def open_view(index: Index) -> PeopleView | None:
    """The people of an opened index's generation; None without faces (or before the faces stage)."""
    try:
        return open_people(index.root, index.path)
    except (ImgSearchError, OSError, ValueError, sqlite3.Error) as exc:  # serve the rest of the index
        log.warning("the people of %s are not served: %s", index.path.name, exc)
        return None


def crop(picture: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> bytes:
    """A JPEG of a face: its box (in the original's `size` pixels) padded by FACE_PAD on each side."""
    x, y, width, height = box
    scale = picture.width / size[0] if size[0] else 1.0
    pad_x, pad_y = width * FACE_PAD, height * FACE_PAD
    left, top = max(0.0, (x - pad_x) * scale), max(0.0, (y - pad_y) * scale)
    right = min(float(picture.width), (x + width + pad_x) * scale)
    bottom = min(float(picture.height), (y + height + pad_y) * scale)
    if right - left < 1 or bottom - top < 1:
        raise ImageNotFound("this face lies outside its picture")
    face = picture.crop((round(left), round(top), round(right), round(bottom)))
    face.thumbnail((CROP_SIDE, CROP_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    face.save(out, format="JPEG", quality=88)
    return out.getvalue()


class ServedPeople:
    """The people of one served generation (or none), for search, the API and descriptions."""

    def __init__(self, index: Index, view: PeopleView | None, on_change: Callable[[], None] = lambda: None):
        self.index = index
        self.view = view
        self.on_change = on_change  # a change of names or people: kept selections are stale
        self._names: NameMatcher | None = None
        self._crops: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, index: Index, on_change: Callable[[], None] = lambda: None) -> ServedPeople:
        """The people of the generation the index serves."""
        return cls(index, open_view(index), on_change)

    def serve(self, view: PeopleView | None) -> None:
        """Serve other people (tests give fakes): what was kept of the previous ones goes."""
        self.view = view
        self.changed()

    def changed(self) -> None:
        """Forget what was derived from the people: the names to read, the kept selections."""
        with self._lock:
            self._names = None
            self._crops.clear()
        self.on_change()

    @property
    def present(self) -> bool:
        """True when the served index has people."""
        return self.view is not None

    def listed(self) -> list[Person]:
        """Every person, largest first (none without faces)."""
        return [] if self.view is None else self.view.people()

    def _view(self, key: str) -> PeopleView:
        """The view; PersonNotFound naming `key` when the index has none."""
        if self.view is None:
            raise PersonNotFound(f"no person {key[:NAME_LENGTH]!r}: {NO_FACES}")
        return self.view

    def person(self, key: str) -> Person:
        """The person with this id or name, in any case; PersonNotFound (404) otherwise."""
        return self._view(key).person(key)

    def faces_of(self, image_id: str) -> list[Face]:
        """The faces found in one image (none without faces)."""
        return [] if self.view is None else self.view.faces_of(image_id)

    def names(self) -> NameMatcher:
        """The names of the named people, to read in queries (kept until a change)."""
        with self._lock:
            if self._names is None:
                named = [(person.id, person.name) for person in self.listed() if person.name]
                self._names = NameMatcher(named)
            return self._names

    def named_in(self, image_id: str) -> list[Person]:
        """The named people whose faces were found in one image, each once, in the order of the faces."""
        if self.view is None:
            return []
        found: dict[str, Person] = {}
        for face in self.view.faces_of(image_id):
            if face.person is not None and face.person not in found:
                try:
                    found[face.person] = self.view.person(face.person)
                except PersonNotFound:
                    continue
        return [person for person in found.values() if person.name]

    def rows(self, key: str) -> np.ndarray:
        """The `person` filter: True for each row showing the person with this id or name."""
        if self.view is None:
            raise Conflict(NO_PEOPLE)
        try:
            person = self.view.person(key)
        except PersonNotFound:
            wanted = key[:NAME_LENGTH]
            raise BadQuery(
                f"person: no person has the id or name {wanted!r} (GET /people lists them)"
            ) from None
        ids = sorted(self.view.images_of(person.id))
        mask = np.zeros(self.index.count, dtype=bool)
        with self.index.manifest() as connection:
            for first in range(0, len(ids), CHUNK):
                chunk = ids[first : first + CHUNK]
                sql = f"SELECT row FROM images WHERE id IN ({', '.join('?' * len(chunk))})"
                rows = [int(row) for (row,) in connection.execute(sql, chunk)]
                mask[[row for row in rows if 0 <= row < len(mask)]] = True
        return mask

    def rename(self, person_id: str, name: str) -> Person:
        """Name a person; BadPersonChange (422) for an empty or overlong name."""
        name = " ".join(name.split())
        if not name:
            raise BadPersonChange("name: give a name with at least one non-space character")
        if len(name) > NAME_LENGTH:
            raise BadPersonChange(f"name: at most {NAME_LENGTH} characters, got {len(name)}")
        person = self._view(person_id).person(person_id)  # an unknown id is a 404 before any change
        renamed = self._view(person_id).rename(person.id, name)
        self.changed()
        return renamed

    def merge(self, person_id: str, into: str) -> Person:
        """Fold one person into another: BadPersonChange (422) into itself, PersonNotFound (404) unknown."""
        view = self._view(person_id)
        merged, kept = view.person(person_id), view.person(into)
        if merged.id == kept.id:
            raise BadPersonChange(f"into: a person cannot be merged into itself ({merged.id!r})")
        result = view.merge(merged.id, kept.id)
        self.changed()
        return result

    def thumbnail(self, key: str) -> bytes:
        """A JPEG of the face that stands for the person (from the original; 404 when it is gone)."""
        view = self._view(key)
        face = view.face(view.person(key).thumbnail_face)
        with self._lock:
            if face.face_id in self._crops:
                return self._crops[face.face_id]
        record = self.index.get(face.image_id)
        try:
            data = self.index.original_path(record).read_bytes()
            if hashlib.sha256(data).hexdigest() != record.sha256:
                raise ImageNotFound(f"the original of image {record.id} has changed since it was indexed")
            picture, size = decode_sized(data, COLLECTION_PIXELS, 1 << 16, name=record.source)
        except OSError as exc:
            raise ImageNotFound(f"the original of image {record.id} is no longer available") from exc
        except ImgSearchError as exc:
            raise Conflict(f"the face cannot be cut from image {record.id} here: {exc}") from exc
        found = crop(picture, face.box, size)
        with self._lock:
            self._crops[face.face_id] = found
            while len(self._crops) > CROPS_KEPT:
                self._crops.popitem(last=False)
        return found
