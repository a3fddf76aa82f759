"""People: the faces of an index grouped into people, with ids and names that last across builds.

The faces themselves are found, aligned and described by the faces build stage (app/face_stage.py,
opt-in: `imgsearch build --faces`) and stored inside the index; this module groups them into people
and keeps the names and merges a user gave beside the generations, so they survive every rebuild.
The API, the CLI and search read people only through `PeopleView` (tests give fakes).

Grouping (`assign`, run by the faces stage on each generation it publishes), immich's way: a face
without a person first joins the person owning the nearest representative face within `JOIN`
(0.5; dlib's own threshold is 0.6); the faces left are clustered with DBSCAN (`JOIN`, `MIN_FACES`):
each cluster becomes a new person, a face near no other stays in no person (`Face.person` None, not
listed by `people()`): a candidate that joins a person, or forms one, when a near face arrives. A
person's id therefore never changes because a photo was added, and a rebuild that re-detects every
face finds the same people through their representatives (up to `REPRESENTATIVES` faces each).

The store, `<index_dir>/people.sqlite` (app/layout.py PEOPLE), holds each person's number (id
`p<number>`), name, `merged_into` and representative descriptors; SQLite transactions keep it whole
when a build and the service write it at once. `imgsearch build --no-faces` deletes it with the faces.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.catalog import FACES, has_table
from app.errors import BadPersonChange, Conflict, PersonNotFound
from app.faces import DIMENSION, distances
from app.layout import MANIFEST, PEOPLE

JOIN = 0.5  # a face joins a person whose representative lies this close (dlib's threshold: 0.6)
MIN_FACES = 2  # faces within JOIN of each other that make a new person (a face alone stays a candidate)
REPRESENTATIVES = 8  # descriptors a person keeps to be found again by a rebuild
JOIN_CHUNK = 1024  # faces compared with every representative at once
MAX_NAME = 100  # characters in a person's name
STORE_TIMEOUT_S = 30.0  # a change waits this long for another writer of the store (a build grouping faces)
STORE_SQL = (
    "CREATE TABLE IF NOT EXISTS people (number INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, "
    "merged_into INTEGER)",
    "CREATE TABLE IF NOT EXISTS representatives (person INTEGER NOT NULL, descriptor BLOB NOT NULL)",
)


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


def number_of(person_id: str) -> int | None:
    """The store's number of a person id (`p12` → 12); None for anything else."""
    digits = person_id.strip().lower().removeprefix("p")
    return int(digits) if person_id.strip().lower().startswith("p") and digits.isdecimal() else None


@contextmanager
def store(index_dir: Path) -> Iterator[sqlite3.Connection]:
    """The people store of an index (created when missing), in one write transaction; Conflict when it
    cannot be written now (another writer past STORE_TIMEOUT_S, a read-only index folder)."""
    connection: sqlite3.Connection | None = None
    try:
        connection = sqlite3.connect(index_dir / PEOPLE, timeout=STORE_TIMEOUT_S, isolation_level=None)
        for sql in STORE_SQL:
            connection.execute(sql)
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if connection is not None:
            connection.close()
        raise Conflict(f"the people of this index cannot be changed now ({exc}); try again") from None
    with closing(connection):
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


@dataclass(frozen=True)
class Directory:
    """What the store says of people: names and merges (by number)."""

    names: dict[int, str | None]
    merged_into: dict[int, int]

    @staticmethod
    def read(connection: sqlite3.Connection) -> Directory:
        """The store's people."""
        rows = connection.execute("SELECT number, name, merged_into FROM people").fetchall()
        return Directory(
            {int(n): name for n, name, _ in rows}, {int(n): int(m) for n, _, m in rows if m is not None}
        )

    def resolve(self, number: int) -> int:
        """The person a number ends at once merges are followed (itself when never merged)."""
        seen = {number}
        while number in self.merged_into and self.merged_into[number] not in seen:
            number = self.merged_into[number]
            seen.add(number)
        return number


def _representatives(connection: sqlite3.Connection, directory: Directory) -> tuple[np.ndarray, list[int]]:
    """Every representative descriptor of the store and the person (merges followed) it stands for."""
    rows = connection.execute("SELECT person, descriptor FROM representatives").fetchall()
    vectors = np.array([np.frombuffer(blob, dtype=np.float32) for _, blob in rows], dtype=np.float32)
    return vectors.reshape(-1, DIMENSION), [directory.resolve(int(person)) for person, _ in rows]


def _clusters(vectors: np.ndarray) -> list[list[int]]:
    """Groups (row numbers) of at least MIN_FACES descriptors chained within JOIN (DBSCAN), largest first."""
    if len(vectors) < MIN_FACES:
        return []
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=JOIN, min_samples=MIN_FACES, metric="euclidean").fit_predict(vectors)
    groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels):
        if label >= 0:
            groups[int(label)].append(row)
    return sorted(groups.values(), key=len, reverse=True)


def _typical(vectors: np.ndarray, count: int) -> list[int]:
    """The rows of the `count` descriptors nearest their mean."""
    near = distances(vectors, vectors.mean(0, keepdims=True))[:, 0]
    return [int(row) for row in np.argsort(near, kind="stable")[:count]]


def _join(people: sqlite3.Connection, vectors: np.ndarray) -> dict[int, int]:
    """The rows of `vectors` near a person's representative, with that person's number (merges followed);
    the first few of them become representatives too."""
    known, owners = _representatives(people, Directory.read(people))
    given: dict[int, int] = {}
    for first in range(0, len(vectors) if len(known) else 0, JOIN_CHUNK):  # bounded memory
        near = distances(vectors[first : first + JOIN_CHUNK], known)
        for found in np.flatnonzero(near.min(1) <= JOIN):
            given[first + int(found)] = owners[int(near[found].argmin())]
    counts: dict[int, int] = defaultdict(int)
    for owner in owners:
        counts[owner] += 1
    for row, number in sorted(given.items()):
        if counts[number] < REPRESENTATIVES:
            counts[number] += 1
            people.execute("INSERT INTO representatives VALUES (?, ?)", (number, vectors[row].tobytes()))
    return given


def assign(index_dir: Path, connection: sqlite3.Connection) -> int:
    """Give the faces without a person in the manifest at `connection` their person (module docstring):
    existing people first, new people from the rest; returns the faces given one."""
    rows = connection.execute(f"SELECT face, descriptor FROM {FACES} WHERE person IS NULL").fetchall()
    if not rows:
        return 0
    faces = [int(face) for face, _ in rows]
    vectors = np.array([np.frombuffer(blob, dtype=np.float32) for _, blob in rows], dtype=np.float32)
    with store(index_dir) as people:
        given = _join(people, vectors)
        rest = [row for row in range(len(faces)) if row not in given]
        for group in _clusters(vectors[rest]):
            members = [rest[i] for i in group]
            made = int(people.execute("INSERT INTO people (name) VALUES (NULL)").lastrowid or 0)
            given.update((row, made) for row in members)
            typical = [members[i] for i in _typical(vectors[members], REPRESENTATIVES)]
            people.executemany(
                "INSERT INTO representatives VALUES (?, ?)",
                [(made, vectors[row].tobytes()) for row in typical],
            )
    with connection:
        connection.executemany(
            f"UPDATE {FACES} SET person = ? WHERE face = ?",
            [(f"p{number}", faces[row]) for row, number in given.items()],
        )
    return len(given)


@dataclass(frozen=True)
class _Row:
    """One face as the generation stores it (its person before merges)."""

    face: int
    image: str
    box: tuple[int, int, int, int]
    score: float
    size: int
    number: int | None


class People:
    """The people of one generation (its faces) and the index's store (names, merges): a PeopleView.

    Opening costs one query; the faces (no descriptors) are read once, on first use. Names, merges and
    each person's faces are kept until the store changes (its header's change counter, read on each
    call), so a rename through one view, or the CLI, shows in every other.
    """

    def __init__(self, index_dir: Path, generation: Path) -> None:
        self.index_dir, self.manifest = index_dir, generation / MANIFEST
        self._rows: dict[int, _Row] | None = None
        self._by_image: dict[str, list[_Row]] = defaultdict(list)
        self._lock = threading.Lock()
        self._kept: tuple[tuple[int, ...] | None, Directory, dict[int, list[_Row]]] | None = None
        self._listed: tuple[Directory, list[Person]] | None = None  # people() for the kept directory
        self._kept_lock = threading.Lock()

    def rows(self) -> dict[int, _Row]:
        """The generation's faces by id (read once)."""
        with self._lock:
            if self._rows is None:
                sql = f"SELECT face, id, x, y, w, h, score, size, person FROM {FACES} ORDER BY face"
                with closing(sqlite3.connect(f"file:{self.manifest}?mode=ro", uri=True)) as connection:
                    found = connection.execute(sql).fetchall()
                self._rows = {
                    int(face): _Row(
                        int(face), str(image), (x, y, w, h), float(score), int(size), number_of(person or "")
                    )
                    for face, image, x, y, w, h, score, size, person in found
                }
                for row in self._rows.values():
                    self._by_image[row.image].append(row)
            return self._rows

    def _directory(self) -> Directory:
        """Names and merges as the store holds them now (none when it was never written)."""
        return self._current()[0]

    def _current(self) -> tuple[Directory, dict[int, list[_Row]]]:
        """Names, merges and each person's faces as the store holds them now (kept until it changes)."""
        path = self.index_dir / PEOPLE
        signature = _signature(path)
        with self._kept_lock:
            if self._kept is not None and self._kept[0] == signature:
                return self._kept[1], self._kept[2]
        directory = Directory({}, {})
        if signature is not None:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)) as connection:
                if has_table(connection, "people"):
                    directory = Directory.read(connection)
        groups = self._groups(directory)
        with self._kept_lock:
            self._kept = (signature, directory, groups)
        return directory, groups

    def _groups(self, directory: Directory) -> dict[int, list[_Row]]:
        """Each person's faces, merges followed."""
        groups: dict[int, list[_Row]] = defaultdict(list)
        for row in self.rows().values():
            if row.number is not None:
                groups[directory.resolve(row.number)].append(row)
        return groups

    def _person(self, number: int, rows: list[_Row], directory: Directory) -> Person:
        """A person as the service shows it."""
        best = max(rows, key=lambda row: (row.size, row.score, -row.face))
        images = len({row.image for row in rows})
        return Person(f"p{number}", directory.names.get(number), len(rows), images, best.face)

    def people(self) -> list[Person]:
        """Every person with a face in this generation, most images first (faces in no person: none)."""
        directory, groups = self._current()
        listed = self._listed
        if listed is not None and listed[0] is directory:
            return list(listed[1])
        found = [self._person(n, rows, directory) for n, rows in groups.items()]
        ranked = sorted(found, key=lambda p: (-p.images, -p.faces, number_of(p.id) or 0))
        self._listed = (directory, ranked)
        return list(ranked)

    def _find(
        self, key: str, directory: Directory, groups: dict[int, list[_Row]] | None = None
    ) -> tuple[int, list[_Row]]:
        """The person this id (merges followed) or name names, with its faces; PersonNotFound otherwise."""
        groups = self._groups(directory) if groups is None else groups
        number = number_of(key)
        if number is not None and directory.resolve(number) in groups:
            resolved = directory.resolve(number)
            return resolved, groups[resolved]
        wanted = key.strip().casefold()
        for candidate, rows in groups.items():
            name = directory.names.get(candidate)
            if wanted and name is not None and name.casefold() == wanted:
                return candidate, rows
        raise PersonNotFound(f"no person {key!r} in this index (GET /people lists them)")

    def person(self, key: str) -> Person:
        """The person with this id or name (case-insensitive); PersonNotFound otherwise."""
        directory, groups = self._current()
        return self._person(*self._find(key, directory, groups), directory)

    def _face(self, row: _Row, directory: Directory) -> Face:
        """A stored face as the service shows it (merges followed)."""
        person = None if row.number is None else f"p{directory.resolve(row.number)}"
        return Face(row.face, row.image, row.box, row.score, person)

    def faces_of(self, image_id: str) -> list[Face]:
        """The faces found in this image, best score first (empty when none or not read)."""
        directory = self._directory()
        self.rows()
        rows = sorted(self._by_image.get(image_id, []), key=lambda row: -row.score)
        return [self._face(row, directory) for row in rows]

    def images_of(self, person_id: str) -> frozenset[str]:
        """The images in which this person's faces were found (empty for an unknown person)."""
        try:
            return frozenset(row.image for row in self._find(person_id, *self._current())[1])
        except PersonNotFound:
            return frozenset()

    def face(self, face_id: int) -> Face:
        """One face by its id; PersonNotFound when the generation has no such face."""
        row = self.rows().get(face_id)
        if row is None:
            raise PersonNotFound(f"no face {face_id} in this index")
        return self._face(row, self._directory())

    def rename(self, person_id: str, name: str) -> Person:
        """Name a person (kept in the store); BadPersonChange for an empty, too long or taken name."""
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise BadPersonChange(f"a person's name is 1 to {MAX_NAME} characters, not only spaces")
        with store(self.index_dir) as connection:
            directory = Directory.read(connection)
            number, rows = self._find(person_id, directory)
            for other in self._groups(directory):
                taken = directory.names.get(other)
                if other != number and taken is not None and taken.casefold() == name.casefold():
                    raise BadPersonChange(f"{taken!r} is the name of person p{other}: merge the two instead")
            if number_of(name) is not None:
                raise BadPersonChange(f"{name!r} reads as a person id: give a name")
            _ensure(connection, number)
            connection.execute("UPDATE people SET name = ? WHERE number = ?", (name, number))
            return self._person(number, rows, Directory.read(connection))

    def merge(self, person_id: str, into: str) -> Person:
        """Fold one person into another (kept in the store; the first's name goes to an unnamed second);
        BadPersonChange into itself, PersonNotFound for an unknown one."""
        with store(self.index_dir) as connection:
            directory = Directory.read(connection)
            number, _ = self._find(person_id, directory)
            target, _ = self._find(into, directory)
            if number == target:
                raise BadPersonChange(f"person {person_id} cannot be merged into itself")
            _ensure(connection, number)
            _ensure(connection, target)
            connection.execute("UPDATE people SET merged_into = ? WHERE number = ?", (target, number))
            if directory.names.get(target) is None and directory.names.get(number) is not None:
                connection.execute(
                    "UPDATE people SET name = ? WHERE number = ?", (directory.names[number], target)
                )
            connection.execute("UPDATE people SET name = NULL WHERE number = ?", (number,))
            directory = Directory.read(connection)
            return self._person(target, self._groups(directory)[target], directory)


def _signature(path: Path) -> tuple[int, ...] | None:
    """What changes whenever the store does: its file's identity and size and the change counter SQLite
    writes into its header on every commit (None when there is no store)."""
    try:
        with path.open("rb") as file:
            header = file.read(28)
            status = path.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_size, int.from_bytes(header[24:28], "big"))


def _ensure(connection: sqlite3.Connection, number: int) -> None:
    """A store row for this person (a store deleted by hand loses names, not the people of the index)."""
    connection.execute("INSERT OR IGNORE INTO people (number) VALUES (?)", (number,))


def open_people(index_dir: Path, generation: Path) -> PeopleView | None:
    """The people of the generation `generation` of the index at `index_dir`; None when it holds no faces
    (built without `--faces`)."""
    manifest = generation / MANIFEST
    try:
        with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as connection:
            if not has_table(connection, FACES):
                return None
    except sqlite3.Error:
        return None
    return People(index_dir, generation)
