"""Faces through the build (app/face_stage.py), opt-in: `--faces` (or IMGSEARCH_FACES) stores each face's
box in the file's own pixels, a picture without faces is looked at once, an update looks only at new
pictures and adds faces to an index built without them re-encoding nothing, a removed photo takes its
faces with it, an interrupted stage is resumed, `--no-faces` drops them all; and dlib's real models
find the astronaut's face and none in a face-free picture."""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import app.build_ray
from app import cli, face_stage
from app.build import BuildConfig, StageInterrupted, build_index
from app.cli import build as cli_build
from app.faces import FaceReader
from app.index import Index
from app.layout import PEOPLE, live_path
from app.people import open_people
from app.pipeline import Encoded, Pipeline
from app.preprocessing import Pixels
from app.settings import Settings
from app.sources import FolderSource
from app.watch import Watcher
from tests.conftest import ids_by_source
from tests.face_fakes import ALICE, BOB, ColourFaces, descriptor, portrait

REAL_FACE_READER = cli_build.face_reader  # the fixture below replaces it in the module

CONFIG = BuildConfig(pca_dim=0, workers=0, ocr=False, faces=True)


def faces_table(index_dir: Path) -> list[tuple[Any, ...]]:
    """The served index's faces: image id, box, person."""
    with closing(sqlite3.connect(live_path(index_dir) / "manifest.sqlite")) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "faces" not in tables:
            return []
        return db.execute("SELECT id, x, y, w, h, person FROM faces ORDER BY face").fetchall()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A large photo of Alice, a small one of Alice, one of Bob and a landscape without a face."""
    folder = tmp_path / "photos"
    portrait(folder / "alice_big.jpg", ALICE, (4000, 3000))
    portrait(folder / "alice.png", ALICE, (120, 90))
    portrait(folder / "bob.png", BOB, (90, 120))
    portrait(folder / "landscape.png", None)
    return folder


def build(folder: Path, target: Path, pipeline: Pipeline, reader: Any, update: bool = False) -> Any:
    """One build of `folder` into `target` with the faces stage on."""
    return build_index(
        FolderSource(folder), target, pipeline, CONFIG, progress=False, update=update, faces=reader
    )


def test_faces_are_stored_with_boxes_in_the_files_own_pixels(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target, reader = tmp_path / "index", ColourFaces()
    report = build(photos, target, pipeline, reader)
    assert (report.indexed, report.faces_read, report.faces_found) == (4, 4, 3)
    ids = ids_by_source(target)
    boxes = {image: (x, y, w, h) for image, x, y, w, h, _ in faces_table(target)}
    read_on = boxes[ids["alice_big.jpg"]]  # found on a 1000 px copy, stored in the file's 4000 px
    assert read_on == pytest.approx((1000, 750, 2000, 1500), abs=4)
    assert boxes[ids["bob.png"]] == (22, 30, 45, 60)
    assert ids["landscape.png"] not in boxes
    assert max(max(size) for size in reader.sizes) < 4000  # the stage decodes a smaller copy


def test_faces_are_off_by_default(photos: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0, ocr=False)
    reader = ColourFaces()
    build_index(FolderSource(photos), target, pipeline, config, progress=False, faces=reader)
    assert reader.sizes == [] and faces_table(target) == []
    assert open_people(target, live_path(target)) is None and not (target / PEOPLE).exists()


def test_an_update_looks_only_at_new_pictures_and_a_removed_photo_takes_its_faces(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    build(photos, target, pipeline, ColourFaces())
    portrait(photos / "new" / "bob2.png", BOB, (100, 100))
    (photos / "alice.png").unlink()
    later = ColourFaces()
    report = build(photos, target, pipeline, later, update=True)
    assert later.sizes == [(100, 100)] and (report.faces_read, report.faces_found) == (1, 1)
    ids = ids_by_source(target)
    assert sorted(image for image, *_ in faces_table(target)) == sorted(
        [ids["alice_big.jpg"], ids["bob.png"], ids["new/bob2.png"]]
    )
    again = ColourFaces()
    build(photos, target, pipeline, again, update=True)
    assert again.sizes == []  # the landscape was looked at once: it is not read again


def test_an_index_built_without_faces_gets_them_by_update_without_encoding_anything(
    photos: Path, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(photos), target, pipeline, BuildConfig(pca_dim=0, workers=0, ocr=False))
    encoded: list[int] = []
    encode = pipeline.encode_pixels

    def counted(pixels: Pixels, *args: Any, **kwargs: Any) -> Encoded:
        encoded.append(1)
        return encode(pixels, *args, **kwargs)

    monkeypatch.setattr(pipeline, "encode_pixels", counted)
    report = build(photos, target, pipeline, ColourFaces(), update=True)
    assert (report.encoded, report.reused, report.faces_found) == (0, 4, 3) and encoded == []


def test_an_interrupted_faces_stage_is_resumed_by_the_next_update(
    photos: Path, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(face_stage, "CHECKPOINT_S", 0.0)
    for extra in range(4):
        portrait(photos / "more" / f"{extra}.png", None, (100 + extra, 90))
    target = tmp_path / "index"
    with pytest.raises(StageInterrupted, match="search by meaning is served"):
        build(photos, target, pipeline, ColourFaces(stop_at=6))
    assert Index(target).count == 8
    resumed = ColourFaces()
    build(photos, target, pipeline, resumed, update=True)
    assert len(resumed.sizes) == 4  # the first batch of four was published before Ctrl-C
    assert len(faces_table(target)) == 3


def test_the_watcher_finds_the_faces_of_new_photos(photos: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    target, reader = tmp_path / "index", ColourFaces()
    Watcher(photos, target, pipeline, CONFIG, faces=reader).sync()
    assert len(reader.sizes) == 4 and len(faces_table(target)) == 3


@pytest.fixture
def fake_cli(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[ColourFaces]:
    """`imgsearch build` gets the fake pipeline and a fake face reader whenever it asks for the real one."""
    made: list[ColourFaces] = []
    real = cli_build.face_reader

    def fake(args: Any, settings: Settings) -> ColourFaces | None:
        if real(args, settings) is None:
            return None
        made.append(ColourFaces())
        return made[-1]

    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    monkeypatch.setattr(cli_build, "face_reader", fake)
    monkeypatch.setenv("IMGSEARCH_OCR", "false")
    monkeypatch.delenv("IMGSEARCH_FACES", raising=False)
    return made


def argv(photos: Path, target: Path, *extra: str) -> list[str]:
    """`imgsearch build` of the photos into `target`, in-process and without PCA."""
    options = ["--workers", "0", "--pca-dim", "0", *extra]
    return ["build", "--images", str(photos), "--index-dir", str(target), *options]


def test_build_faces_finds_them_and_no_faces_drops_them_and_the_people(
    photos: Path, fake_cli: list[ColourFaces], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "index"
    assert cli.main(argv(photos, target)) == 0
    assert fake_cli == [] and faces_table(target) == []
    assert cli.main(argv(photos, target, "--update", "--faces")) == 0
    assert "3 faces in 4 looked at" in capsys.readouterr().out
    assert len(faces_table(target)) == 3 and (target / PEOPLE).is_file()
    alice = descriptor(ALICE).tobytes()
    assert alice in (live_path(target) / "manifest.sqlite").read_bytes()
    assert cli.main(argv(photos, target, "--update", "--no-faces")) == 0
    assert faces_table(target) == [] and not (target / PEOPLE).exists()
    assert open_people(target, live_path(target)) is None
    for manifest in (target / "generations").glob("*/manifest.sqlite"):  # no copy keeps a descriptor
        assert alice not in manifest.read_bytes()
    with closing(sqlite3.connect(live_path(target) / "manifest.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 4  # search by meaning kept


def test_faces_on_in_the_settings_finds_them(
    photos: Path, fake_cli: list[ColourFaces], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGSEARCH_FACES", "true")
    target = tmp_path / "index"
    assert cli.main(argv(photos, target)) == 0
    assert len(fake_cli[0].sizes) == 4 and len(faces_table(target)) == 3


def test_faces_and_no_faces_together_are_refused(
    photos: Path, fake_cli: list[ColourFaces], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv(photos, tmp_path / "index", "--faces", "--no-faces"))
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_faces_without_dlib_fail_before_any_work(
    photos: Path,
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    monkeypatch.setenv("IMGSEARCH_OCR", "false")
    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # neither dlib nor its models
    target = tmp_path / "index"
    assert cli.main(argv(photos, target, "--faces")) == 1
    error = capsys.readouterr().err
    assert "pip install" in error and "or build without --faces" in error and not target.exists()


@pytest.fixture(scope="module")
def dlib_reader() -> Any:
    """The product's face reader (dlib's real models), loaded once."""
    from app.faces import FaceReader

    reader = FaceReader()
    reader.load()
    return reader


@pytest.mark.real_weights
def test_dlib_finds_the_astronauts_face_and_knows_her_mirrored(dlib_reader: Any) -> None:
    from skimage import data

    from app.faces import SAME_PERSON, distances

    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    found = dlib_reader.read(astronaut)
    assert len(found) == 1
    x, y, width, height = found[0].box
    assert 150 <= x <= 200 and 50 <= y <= 100 and 70 <= width <= 120 and 70 <= height <= 120  # her face
    assert found[0].descriptor.shape == (128,) and found[0].descriptor.dtype == np.float32
    mirrored = dlib_reader.read(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert len(mirrored) == 1
    assert distances(found[0].descriptor, mirrored[0].descriptor)[0, 0] < SAME_PERSON


@pytest.mark.real_weights
def test_dlib_finds_no_face_in_a_cup_of_coffee(dlib_reader: Any) -> None:
    from skimage import data

    assert dlib_reader.read(Image.fromarray(data.coffee())) == []  # type: ignore[no-untyped-call]


@pytest.mark.real_weights
def test_a_build_with_faces_stores_the_astronauts_face_in_her_photos_pixels(
    dlib_reader: Any, pipeline: Pipeline, tmp_path: Path
) -> None:
    import pickle

    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    astronaut.resize((1536, 1536)).save(folder / "astronaut.jpg", quality=90)  # her face about 270 px
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")  # type: ignore[no-untyped-call]
    copy = pickle.loads(pickle.dumps(dlib_reader))  # what a worker gets: the settings, no model
    assert copy.params == dlib_reader.params and copy._models is None
    target = tmp_path / "index"
    report = build(folder, target, pipeline, dlib_reader)
    assert (report.faces_read, report.faces_found) == (2, 1)
    [(image, x, y, width, height, person)] = faces_table(target)
    assert image == ids_by_source(target)["astronaut.jpg"] and person is None  # one face: a candidate
    assert 450 <= x <= 600 and 150 <= y <= 300 and 210 <= width <= 360 and 210 <= height <= 360


def test_a_box_is_stored_upright_for_a_photo_taken_sideways(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    path = portrait(folder / "sideways.jpg", ALICE, (160, 80))  # stored 160 × 80, shown 80 × 160
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to show
    Image.open(path).save(path, exif=exif.tobytes(), quality=95)
    target = tmp_path / "index"
    build(folder, target, pipeline, ColourFaces())
    [(_, x, y, width, height, _)] = faces_table(target)
    assert (x, y, width, height) == (20, 40, 40, 80)


def test_face_side_setting_sets_the_detection_size_and_bad_ones_are_refused(
    photos: Path,
    fake_cli: list[ColourFaces],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMGSEARCH_FACE_SIDE", "768")
    reader = REAL_FACE_READER(argparse.Namespace(faces=True), Settings())
    assert isinstance(reader, FaceReader) and reader.params.detect_side == 768 and reader.decode_side == 720
    monkeypatch.setenv("IMGSEARCH_FACE_SIDE", "2048")  # a larger copy is decoded larger, not enlarged
    reader = REAL_FACE_READER(argparse.Namespace(faces=True), Settings())
    assert isinstance(reader, FaceReader) and reader.decode_side == 1434
    monkeypatch.setenv("IMGSEARCH_FACE_SIDE", "100")
    target = tmp_path / "index"
    assert cli.main(argv(photos, target, "--faces")) == 1
    assert "IMGSEARCH_FACE_SIDE" in capsys.readouterr().err and not target.exists()
