"""Text in pictures through the build (app/text_stage.py): a word on a sign or a document finds its
picture through POST /search and the CLI, the metadata shows the text, --no-ocr stores none, an
update reads only new pictures and adds text to an index built without it re-encoding nothing, and
an interrupted text stage is resumed by the next update or the watcher."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

import app.build_ray
from app import cli, lexical, text_stage
from app.build import BuildConfig, StageInterrupted, build_index
from app.cli import build as cli_build
from app.index import ImageRecord, Index, live_path
from app.main import create_app
from app.ocr import ImageText, TextReader
from app.pipeline import Encoded, Models, Pipeline
from app.preprocessing import Pixels
from app.settings import Settings
from app.sources import FolderSource, HFDatasetSource
from app.watch import Watcher
from bench.ocr_set import font, receipt, sign
from tests.conftest import coloured_pictures, make_gallery, service_factory, wait_ready
from tests.fakes import COLOURS, CountingReader
from tests.test_reliability import generations, start_build, wait_for_pause

CONFIG = BuildConfig(pca_dim=0, workers=0)
SHOP = "sub/shop.jpg"  # a shop sign: "Golden Dragon"
DOCUMENT = "scan.png"  # a receipt headed "RECEIPT", from "Fresh Market"
LETTER = "letter.png"  # one large letter "K" and a small "x": noise, not indexed


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny gallery plus a shop sign and a scanned receipt rendered with this machine's fonts."""
    folder = make_gallery(tmp_path_factory.mktemp("texts"))
    image, lines = sign(random.Random("x"), 0)
    assert lines[0] == "Golden Dragon"
    image.save(folder / SHOP, quality=90)
    image, lines = receipt(random.Random("y"), 0)
    assert lines[:2] == ["RECEIPT", "Fresh Market"]
    image.save(folder / DOCUMENT)
    letter = Image.new("RGB", (400, 300), (240, 240, 240))
    draw = ImageDraw.Draw(letter)
    draw.text((150, 80), "K", font=font("DejaVuSans-Bold", 120), fill=(10, 10, 10))
    draw.text((20, 250), "x", font=font("DejaVuSans", 24), fill=(10, 10, 10))
    letter.save(folder / LETTER)
    return folder


@pytest.fixture(scope="module")
def reader() -> TextReader:
    """The product's reader (real PP-OCRv4 networks), loaded once."""
    loaded = TextReader(threads=2)
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def read_index(
    pictures: Path, pipeline: Pipeline, reader: TextReader, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An index of the pictures built with their text read."""
    target = tmp_path_factory.mktemp("read") / "index"
    report = build_index(FolderSource(pictures), target, pipeline, CONFIG, progress=False, reader=reader)
    assert (report.indexed, report.text_read, report.text_found) == (6, 6, 2)
    return target


def client_over(index_dir: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over the app on `index_dir` with the fake models."""
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path / "cache", device="cpu")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def client(read_index: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A client over the index whose text was read."""
    yield from client_over(read_index, models, tmp_path)


def first(client: TestClient, query: str) -> dict[str, object]:
    """The best result of POST /search for `query`."""
    response = client.post("/search", json={"query": query, "top_k": 3})
    assert response.status_code == 200, response.text
    return dict(response.json()["results"][0])


def records(index_dir: Path) -> list[ImageRecord]:
    """Every record of the served index, in row order."""
    index = Index(index_dir)
    try:
        return index.records(list(range(index.count)))
    finally:
        index.close()


def metadata(client: TestClient, index_dir: Path, source: str) -> dict[str, object]:
    """GET /images/{id}/metadata of the indexed file `source`."""
    image = next(record for record in records(index_dir) if record.source == source)
    response = client.get(f"/images/{image.id}/metadata")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.real_weights
@pytest.mark.parametrize(
    ("query", "source"), [("golden dragon", SHOP), ("dragon", SHOP), ("receipt", DOCUMENT)]
)
def test_a_word_in_a_picture_finds_it_through_post_search(
    client: TestClient, query: str, source: str
) -> None:
    found = first(client, query)
    assert found["source"] == source
    assert "text" in found["matched"]  # type: ignore[operator]


@pytest.mark.real_weights
def test_the_metadata_shows_the_text_read_in_the_picture(client: TestClient, read_index: Path) -> None:
    assert metadata(client, read_index, SHOP)["text_in_image"] == "Golden Dragon"
    document = metadata(client, read_index, DOCUMENT)["text_in_image"]
    assert isinstance(document, str) and document.splitlines()[:2] == ["RECEIPT", "Fresh Market"]
    assert metadata(client, read_index, "red.png")["text_in_image"] == ""  # read: no text in it
    assert metadata(client, read_index, LETTER)["text_in_image"] == ""  # single letters are noise


def described(client: TestClient, index_dir: Path, source: str) -> dict[str, object]:
    """POST /describe {"image_id"} of the indexed file `source`."""
    image = next(record for record in records(index_dir) if record.source == source)
    response = client.post("/describe", json={"image_id": image.id})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.real_weights
def test_describe_quotes_the_text_read_in_the_picture_and_nothing_else(
    client: TestClient, read_index: Path
) -> None:
    document = described(client, read_index, DOCUMENT)
    assert document["description"] == "A document headed 'RECEIPT'."
    assert {"phrase": "RECEIPT", "source": "index", "labels": [], "probability": 1.0} in document["evidence"]  # type: ignore[operator]
    shop = str(described(client, read_index, SHOP)["description"])
    assert shop.endswith(", with the words 'Golden Dragon'.") and not shop.startswith("A document")
    assert "'" not in str(described(client, read_index, "red.png")["description"])  # no text: none quoted


@pytest.mark.real_weights
def test_the_cli_finds_a_picture_by_a_word_on_it(
    read_index: Path, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = service_factory(models, tmp_path / "cache")
    assert (
        cli.main(["search", "dragon", "--index-dir", str(read_index), "--top-k", "2"], factory=factory) == 0
    )
    assert capsys.readouterr().out.splitlines()[0].split()[3] == SHOP


@pytest.fixture
def fake_profile(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[CountingReader]:
    """`imgsearch build` gets the fake pipeline and a counting reader (the readers it made are listed)."""
    made: list[CountingReader] = []
    real = cli_build.text_reader

    def counting(args: object, settings: Settings) -> CountingReader | None:
        if real(args, settings) is None:  # type: ignore[arg-type]
            return None
        made.append(CountingReader())
        return made[-1]

    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    monkeypatch.setattr(cli_build, "text_reader", counting)
    return made


def texts_table(index_dir: Path) -> list[tuple[str, str]]:
    """The served index's texts rows."""
    with closing(sqlite3.connect(live_path(index_dir) / "manifest.sqlite")) as db:
        return sorted(db.execute("SELECT id, text FROM texts").fetchall())


def test_no_ocr_stores_no_text(
    pictures: Path, fake_profile: list[CountingReader], models: Models, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    argv = ["build", "--images", str(pictures), "--index-dir", str(target), "--workers", "0", "--no-ocr"]
    assert cli.main([*argv, "--pca-dim", "0"]) == 0
    assert fake_profile == [] and texts_table(target) == []
    for client in client_over(target, models, tmp_path):
        assert metadata(client, target, SHOP)["text_in_image"] is None  # not read
        response = client.post("/search", json={"query": "lantern"}).json()
        assert all("text" not in result["matched"] for result in response["results"])


def build_argv(pictures: Path, target: Path) -> list[str]:
    """`imgsearch build` of the pictures into `target`, in-process and without PCA."""
    return [
        "build",
        "--images",
        str(pictures),
        "--index-dir",
        str(target),
        "--workers",
        "0",
        "--pca-dim",
        "0",
    ]


def test_ocr_off_in_the_settings_stores_no_text(
    pictures: Path, fake_profile: list[CountingReader], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGSEARCH_OCR", "false")
    target = tmp_path / "index"
    argv = build_argv(pictures, target)
    assert cli.main(argv) == 0
    assert fake_profile == [] and texts_table(target) == []
    monkeypatch.setenv("IMGSEARCH_OCR", "true")
    assert cli.main([*argv, "--update"]) == 0
    assert len(fake_profile[0].sizes) == 6 and len(texts_table(target)) == 6


def test_an_index_built_without_ocr_gets_its_text_by_update_without_encoding_anything(
    pictures: Path, pipeline: Pipeline, reader: TextReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, config = tmp_path / "index", BuildConfig(pca_dim=8, workers=0)  # with PCA, as by default
    build_index(FolderSource(pictures), target, pipeline, config, progress=False)
    before = Index(target)
    vectors = np.array(before.vectors)
    before.close()
    stored = records(target)
    encoded: list[int] = []
    encode = pipeline.encode_pixels

    def counted(pixels: Pixels, *args: Any, **kwargs: Any) -> Encoded:
        encoded.append(1)
        return encode(pixels, *args, **kwargs)

    monkeypatch.setattr(pipeline, "encode_pixels", counted)
    report = build_index(
        FolderSource(pictures), target, pipeline, config, progress=False, update=True, reader=reader
    )
    assert (report.encoded, report.reused, report.text_read, report.text_found) == (0, 6, 6, 2)
    assert encoded == []
    after = Index(target)
    assert np.array_equal(np.array(after.vectors), vectors) and records(target) == stored
    with after.manifest() as connection:
        assert "golden dragon" in str(connection.execute("SELECT text FROM lexical_words").fetchall())
    after.close()


def test_an_update_reads_the_text_of_new_pictures_only(pipeline: Pipeline, tmp_path: Path) -> None:
    folder, target = coloured_pictures(tmp_path / "photos", 4, seed=3), tmp_path / "index"
    first_reader = CountingReader()
    build_index(FolderSource(folder), target, pipeline, CONFIG, progress=False, reader=first_reader)
    assert len(first_reader.sizes) == 4
    (folder / "new").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(folder / "new" / "sign.png")
    later = CountingReader()
    report = build_index(
        FolderSource(folder), target, pipeline, CONFIG, progress=False, update=True, reader=later
    )
    assert later.sizes == [(64, 48)] and (report.encoded, report.text_read) == (1, 1)
    assert len(texts_table(target)) == 5  # the text read before was carried over
    again = CountingReader()
    build_index(FolderSource(folder), target, pipeline, CONFIG, progress=False, update=True, reader=again)
    assert again.sizes == []


@pytest.fixture
def interrupted(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Six pictures whose text stage was interrupted at the fifth, after publishing the first four."""
    monkeypatch.setattr(text_stage, "CHECKPOINT_S", 0.0)  # publish after each batch of reads
    folder, target = coloured_pictures(tmp_path / "photos", 6, seed=4), tmp_path / "index"
    with pytest.raises(StageInterrupted, match="search by meaning is served"):
        build_index(FolderSource(folder), target, pipeline, CONFIG, progress=False, reader=CountingReader(5))
    assert Index(target).count == 6  # searched by meaning all along
    assert len(texts_table(target)) == 4  # the batch read before the interruption was published
    return folder, target


def test_an_interrupted_text_stage_is_resumed_by_the_next_update(
    interrupted: tuple[Path, Path], pipeline: Pipeline
) -> None:
    folder, target = interrupted
    resumed = CountingReader()
    report = build_index(
        FolderSource(folder), target, pipeline, CONFIG, progress=False, update=True, reader=resumed
    )
    assert (report.encoded, report.text_read, len(resumed.sizes)) == (0, 2, 2)
    assert len(texts_table(target)) == 6


def test_an_interrupted_text_stage_is_resumed_by_the_watcher(
    interrupted: tuple[Path, Path], pipeline: Pipeline
) -> None:
    folder, target = interrupted
    resumed = CountingReader()
    report = Watcher(folder, target, pipeline, CONFIG, resumed).sync()
    assert report is not None and (report.encoded, report.text_read, len(resumed.sizes)) == (0, 2, 2)
    assert len(texts_table(target)) == 6


def test_ctrl_c_in_the_text_stage_says_search_by_meaning_is_served(
    pictures: Path,
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    monkeypatch.setattr(cli_build, "text_reader", lambda args, settings: CountingReader(stop_at=1))
    target = tmp_path / "index"
    argv = build_argv(pictures, target)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert "Traceback" not in err
    assert line.startswith("interrupted: the text stage stopped; search by meaning is served from")
    assert Index(target).count == 6 and texts_table(target) == []


def test_an_index_whose_lexical_tables_predate_the_text_field_still_matches_names() -> None:
    """An older index's FTS5 tables have three columns (no `text`): names still match, no text field."""
    with closing(sqlite3.connect(":memory:")) as db:
        for table, tokenizer in (
            (lexical.WORDS, "unicode61 remove_diacritics 2"),
            (lexical.GRAMS, "trigram"),
        ):
            db.execute(
                f"CREATE VIRTUAL TABLE {table} USING fts5(name, folder, metadata, tokenize='{tokenizer}')"
            )
            db.execute(
                f"INSERT INTO {table}(rowid, name, folder, metadata) VALUES (0, 'golden dragon', '', '')"
            )
        assert not lexical.has_text_column(db)
        (hit,) = lexical.search(db, "dragon", 5)
        assert (hit.row, hit.matched) == (0, ("name",))


def test_the_noise_filter_keeps_single_letters_out_of_the_index(client: TestClient, read_index: Path) -> None:
    response = client.post("/search", json={"query": "k", "mode": "lexical"}).json()
    assert all(result["source"] != LETTER for result in response["results"])


def test_a_datasets_pictures_are_read_from_the_originals_the_index_keeps(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    from datasets import Dataset, Image as ImageFeature

    pictures = [Image.new("RGB", (40 + i, 30), COLOURS[name]) for i, name in enumerate(COLOURS)]
    dataset = Dataset.from_dict({"image": pictures}).cast_column("image", ImageFeature())
    reader = CountingReader()
    target = tmp_path / "index"
    report = build_index(
        HFDatasetSource(dataset, "image", name="memory"),
        target,
        pipeline,
        CONFIG,
        progress=False,
        reader=reader,
    )
    assert sorted(reader.sizes) == [(40, 30), (41, 30), (42, 30)] and report.text_found == 3
    for client in client_over(target, models, tmp_path):
        results = client.post("/search", json={"query": "lantern", "mode": "lexical"}).json()["results"]
        assert len(results) == 3 and all(result["matched"] == ["text"] for result in results)


def test_a_build_killed_in_its_text_stage_serves_search_by_meaning_and_the_next_update_reads_the_text(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    folder, target = coloured_pictures(tmp_path / "photos", 8, seed=5), tmp_path / "index"
    options = ("--cli", "build", "--ocr", "--text-pause-after", "3")
    build = start_build(folder, target, tmp_path / "cache", *options)
    try:
        wait_for_pause(build)  # in the text stage, three pictures read, nothing of it published yet
        build.kill()
        build.wait()
    finally:
        build.kill()
    assert Index(target).count == 8 and texts_table(target) == []  # search by meaning was served
    resumed = CountingReader()
    report = build_index(
        FolderSource(folder), target, pipeline, CONFIG, progress=False, update=True, reader=resumed
    )
    assert (report.encoded, report.reused, len(resumed.sizes)) == (0, 8, 8)
    assert len(texts_table(target)) == 8
    assert generations(target) == [live_path(target).name]  # the killed stage's generation is gone


class FailingOnce(CountingReader):
    """Fails on the first picture it is given, reads the others."""

    def read(self, image: Image.Image) -> ImageText:
        """A RuntimeError the first time, then the counting reader's text."""
        if not getattr(self, "failed", False):
            self.failed = True
            raise RuntimeError("the networks choked")
        return super().read(image)


def test_a_picture_the_reader_fails_on_costs_its_text_only_and_is_read_again_by_the_next_update(
    pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, target = coloured_pictures(tmp_path / "photos", 4, seed=6), tmp_path / "index"
    report = build_index(FolderSource(folder), target, pipeline, CONFIG, progress=False, reader=FailingOnce())
    assert (report.text_read, len(texts_table(target))) == (3, 3)
    assert "not read: the reader failed on it: RuntimeError('the networks choked')" in caplog.text
    again = CountingReader()
    build_index(FolderSource(folder), target, pipeline, CONFIG, progress=False, update=True, reader=again)
    assert len(again.sizes) == 1 and len(texts_table(target)) == 4
