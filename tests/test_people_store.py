"""People (app/people.py): faces grouped into people through the faces stage, with ids that do not change
when photos are added, names and merges that last across updates and full rebuilds, a removed photo's
faces gone from its person, and bad changes refused with clear errors."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from app import people
from app.build import BuildConfig, build_index
from app.errors import BadPersonChange, Conflict, PersonNotFound
from app.layout import PEOPLE, live_path
from app.people import PeopleView, open_people
from app.pipeline import Pipeline
from app.sources import FolderSource
from tests.conftest import ids_by_source
from tests.face_fakes import ALICE, ALICE_AGAIN, BOB, CAROL, ColourFaces, portrait

CONFIG = BuildConfig(pca_dim=0, workers=0, ocr=False, faces=True)


def build(folder: Path, target: Path, pipeline: Pipeline, update: bool = True) -> PeopleView:
    """Build (an update by default) with the faces stage on; the people of the generation it serves."""
    source = FolderSource(folder)
    build_index(source, target, pipeline, CONFIG, progress=False, update=update, faces=ColourFaces())
    view = open_people(target, live_path(target))
    assert view is not None
    return view


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two photos of Alice (in two lights), one of Bob, one without a face."""
    folder = tmp_path / "photos"
    portrait(folder / "alice1.png", ALICE)
    portrait(folder / "alice2.jpg", ALICE_AGAIN, (200, 150))
    portrait(folder / "bob1.png", BOB)
    portrait(folder / "empty.png", None)
    return folder


def test_two_faces_alike_make_a_person_and_a_lone_face_stays_a_candidate(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    view = build(photos, target, pipeline)
    image = ids_by_source(target)
    [alice] = view.people()  # Bob's single face is no person yet
    assert (alice.name, alice.faces, alice.images) == (None, 2, 2)
    assert view.images_of(alice.id) == {image["alice1.png"], image["alice2.jpg"]}
    [bob_face] = view.faces_of(image["bob1.png"])
    assert bob_face.person is None and bob_face.box == (30, 22, 60, 45)
    assert view.faces_of(image["empty.png"]) == []
    assert view.face(alice.thumbnail_face).image_id == image["alice2.jpg"]  # the larger face stands for her
    assert {face.person for face in view.faces_of(image["alice1.png"])} == {alice.id}


def test_adding_photos_keeps_every_persons_id(
    photos: Path, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(people, "JOIN_CHUNK", 1)  # new faces compared one at a time: the same people
    target = tmp_path / "index"
    alice = build(photos, target, pipeline).people()[0]
    portrait(photos / "later" / "alice3.png", ALICE, (140, 100))
    portrait(photos / "later" / "bob2.png", BOB, (100, 100))
    view = build(photos, target, pipeline)
    found = {person.id: person for person in view.people()}
    assert found[alice.id].images == 3
    [bob] = [person for person in found.values() if person.id != alice.id]
    assert bob.images == 2  # the lone face became a person once a second one came
    portrait(photos / "later" / "alice4.png", ALICE_AGAIN, (160, 100))
    again = build(photos, target, pipeline)
    assert {person.id: person.images for person in again.people()} == {alice.id: 4, bob.id: 2}


def test_a_name_lasts_across_a_full_rebuild_and_finds_the_person(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    view = build(photos, target, pipeline)
    alice = view.rename(view.people()[0].id, "  Alice   Smith ")
    assert alice.name == "Alice Smith"
    rebuilt = build(photos, target, pipeline, update=False)  # every face found again, none carried
    assert rebuilt.person("alice smith") == alice  # by name, case-insensitive: same id, same name
    assert rebuilt.person(alice.id.upper()).name == "Alice Smith"
    assert view.person(alice.id).name == "Alice Smith"  # an older view reads the same store


def test_a_view_that_has_read_the_people_sees_every_later_change_made_elsewhere_at_once(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    portrait(photos / "carol1.png", CAROL)
    portrait(photos / "carol2.png", CAROL, (150, 100))
    reader = build(photos, target, pipeline)
    alice, carol = sorted(reader.people(), key=lambda person: person.images)[:2]
    writer = open_people(target, live_path(target))  # another view (another worker, the CLI)
    assert writer is not None and reader.person(alice.id).name is None
    for name in ("Al", "Bo", "Cy"):  # changes in quick succession, each the same size on disk
        writer.rename(alice.id, name)
        assert reader.person(name).id == alice.id and [p.name for p in reader.people()].count(name) == 1
    writer.merge(carol.id, alice.id)
    assert [(person.id, person.images) for person in reader.people()] == [(alice.id, 4)]
    assert reader.images_of(carol.id) == reader.images_of(alice.id)
    (target / PEOPLE).unlink()  # a store deleted by hand: names and merges go, the people stay
    assert sorted(person.name or "" for person in reader.people()) == ["", ""]


def test_a_merge_lasts_and_new_faces_of_either_join_the_kept_person(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    portrait(photos / "carol1.png", CAROL)
    portrait(photos / "carol2.png", CAROL, (150, 100))
    view = build(photos, target, pipeline)
    alice, carol = sorted(view.people(), key=lambda person: person.images)[:2]
    view.rename(carol.id, "Carol")
    kept = view.merge(carol.id, alice.id)
    assert (kept.id, kept.name, kept.images) == (alice.id, "Carol", 4)  # the name goes to the unnamed one
    assert [person.id for person in view.people()] == [alice.id]
    assert view.person(carol.id).id == alice.id and view.images_of(carol.id) == view.images_of(alice.id)
    portrait(photos / "carol3.png", CAROL, (130, 100))
    later = build(photos, target, pipeline)
    assert [(person.id, person.images) for person in later.people()] == [(alice.id, 5)]
    rebuilt = build(photos, target, pipeline, update=False)
    kept_after = [(person.id, person.name, person.images) for person in rebuilt.people()]
    assert kept_after == [(alice.id, "Carol", 5)]


def test_a_removed_photo_takes_its_face_from_its_person(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    portrait(photos / "alice3.png", ALICE, (140, 100))
    alice = build(photos, target, pipeline).people()[0]
    assert alice.images == 3
    (photos / "alice1.png").unlink()
    view = build(photos, target, pipeline)
    assert view.person(alice.id).images == 2
    assert ids_by_source(target).keys().isdisjoint({"alice1.png"})


def test_bad_changes_are_refused_with_clear_errors(photos: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    target = tmp_path / "index"
    portrait(photos / "bob2.png", BOB, (100, 100))
    view = build(photos, target, pipeline)
    alice, bob = view.people()
    for empty in ("", "   ", "\t\n"):
        with pytest.raises(BadPersonChange, match="name"):
            view.rename(alice.id, empty)
    with pytest.raises(BadPersonChange, match="itself"):
        view.merge(alice.id, alice.id)
    with pytest.raises(PersonNotFound):
        view.merge(alice.id, "p999")
    with pytest.raises(PersonNotFound):
        view.rename("nobody", "Alice")
    with pytest.raises(PersonNotFound):
        view.person("p999")
    with pytest.raises(PersonNotFound):
        view.face(10_000)
    view.rename(alice.id, "Alice")
    with pytest.raises(BadPersonChange, match="merge"):
        view.rename(bob.id, "ALICE")  # two people of one name: merge them instead
    with pytest.raises(BadPersonChange, match="id"):
        view.rename(bob.id, "p7")
    assert view.images_of("nobody") == frozenset()
    assert view.person(bob.id).name is None


def test_a_change_while_the_store_is_held_is_a_conflict_and_changes_nothing(
    photos: Path, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "index"
    view = build(photos, target, pipeline)
    [alice] = view.people()
    monkeypatch.setattr(people, "STORE_TIMEOUT_S", 0.05)
    with closing(sqlite3.connect(target / PEOPLE, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # a build grouping faces holds it
        with pytest.raises(Conflict, match="try again"):
            view.rename(alice.id, "Alice")
        other.execute("ROLLBACK")
    assert view.person(alice.id).name is None
    assert view.rename(alice.id, "Alice").name == "Alice"


def test_an_index_without_faces_has_no_people(photos: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(photos), target, pipeline, BuildConfig(pca_dim=0, workers=0, ocr=False))
    assert open_people(target, live_path(target)) is None
