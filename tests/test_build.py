"""The offline build: what lands in the index, what is skipped, and what is refused."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app import cli
from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, BuildReport, build_index
from app.errors import ImgSearchError, IndexDirRefused, IndexMismatch, IndexUnavailable
from app.generations import build_lock, derived_generation, publish
from app.index import Index, live_path
from app.main import create_app
from app.meta import PcaInfo
from app.pipeline import Models, Pipeline
from app.preprocessing import decode, stack
from app.registry import make_bridge
from app.settings import Settings
from app.sources import FolderSource, HFDatasetSource
from app.writing import pca_skipped
from scripts import build_index as build_script
from tests.conftest import bomb_header, make_gallery, png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS, FakeLabelledEncoder, fake_models


def test_index_holds_every_readable_image_and_reports_the_corrupt_one(
    built: tuple[Path, BuildReport],
) -> None:
    index_dir, report = built
    assert report.indexed == 3
    assert report.skipped == [{"source": "broken.png", "reason": report.skipped[0]["reason"]}]
    on_disk = json.loads((live_path(index_dir) / "build_report.json").read_text())
    assert on_disk["skipped"][0]["source"] == "broken.png"
    index = Index(index_dir)
    sources = {r.source for r in index.records(list(range(index.count)))}
    assert sources == {"red.png", "sub/green.jpg", "sub/blue.webp"}
    assert index.vectors.dtype == np.float16 and isinstance(index.vectors, np.memmap)
    assert np.allclose(np.linalg.norm(np.asarray(index.vectors, dtype=np.float32), axis=1), 1, atol=1e-2)
    meta = index.meta
    assert meta.profile == "fake" and meta.models["image"] == "fake-image" and meta.count == 3
    written = json.loads((live_path(index_dir) / "meta.json").read_text())
    assert {"format_version", "dims", "bridge", "created_at", "build", "precision"} <= set(written)
    assert "identity_bridge" not in written  # never read: no longer written
    assert len(list((live_path(index_dir) / "thumbnails").glob("*.jpg"))) == 3


def test_ids_are_content_hashes_and_duplicates_are_indexed_once(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    data = png_bytes(COLOURS["red"])
    (folder / "a.png").write_bytes(data)
    (folder / "copy.png").write_bytes(data)
    (folder / "b.png").write_bytes(png_bytes(COLOURS["blue"]))
    report = build_index(
        FolderSource(folder), tmp_path / "i1", pipeline, BuildConfig(workers=0), progress=False
    )
    assert report.indexed == 2 and report.duplicates == [{"source": "copy.png", "same_as": "a.png"}]
    first = Index(tmp_path / "i1")
    build_index(FolderSource(folder), tmp_path / "i2", pipeline, BuildConfig(workers=0), progress=False)
    second = Index(tmp_path / "i2")
    ids = [r.id for r in first.records([0, 1])]
    assert ids == [r.id for r in second.records([0, 1])]
    assert all(len(i) == 16 and i.isalnum() for i in ids)


def test_parallel_workers_give_the_same_index(pipeline: Pipeline, gallery: Path, tmp_path: Path) -> None:
    build_index(
        FolderSource(gallery), tmp_path / "w0", pipeline, BuildConfig(workers=0, pca_dim=0), progress=False
    )
    build_index(
        FolderSource(gallery), tmp_path / "w2", pipeline, BuildConfig(workers=2, pca_dim=0), progress=False
    )
    a, b = Index(tmp_path / "w0"), Index(tmp_path / "w2")
    assert [r.id for r in a.records([0, 1, 2])] == [r.id for r in b.records([0, 1, 2])]
    assert np.array_equal(np.asarray(a.vectors), np.asarray(b.vectors))


def test_pca_compresses_and_queries_are_projected_the_same_way(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        Image.new("RGB", (8, 8), colour).save(folder / f"{i}.png")
    Image.new("RGB", (8, 8), COLOURS["green"]).save(folder / "green.png")
    build_index(
        FolderSource(folder), tmp_path / "pca", pipeline, BuildConfig(workers=0, pca_dim=4), progress=False
    )
    index = Index(tmp_path / "pca")
    assert index.dim == 4 and index.meta.pca == PcaInfo(dim=4, centred=False)
    service = service_over(index, pipeline.models, None)
    hits = service.search_text("green thing", 1)
    assert hits[0].record.source == "green.png"


def test_hf_dataset_source_stores_and_serves_originals(pipeline: Pipeline, tmp_path: Path) -> None:
    from datasets import Dataset, Image as ImageFeature

    pictures = [Image.new("RGB", (20, 10), COLOURS[name]) for name in ("red", "green")]
    dataset = Dataset.from_dict({"image": pictures, "caption": ["r", "g"]}).cast_column(
        "image", ImageFeature()
    )
    source = HFDatasetSource(dataset, "image", name="memory")
    report = build_index(source, tmp_path / "hf", pipeline, BuildConfig(workers=0), progress=False)
    assert report.indexed == 2
    service = service_over(Index(tmp_path / "hf"), pipeline.models, None)
    hit = service.search_text("red thing", 1)[0]
    assert hit.record.source == "memory#0" and (hit.record.width, hit.record.height) == (20, 10)
    with Image.open(service.index.original_path(hit.record)) as original:
        assert original.getpixel((0, 0)) == COLOURS["red"]
    with pytest.raises(ValueError, match="no column 'picture'"):
        HFDatasetSource(dataset, "picture")
    with pytest.raises(ValueError, match=r"'caption' does not hold images .*columns that hold images: image"):
        HFDatasetSource(dataset, "caption")


def test_saved_datasets_load_from_disk_and_name_their_split_and_row(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    from datasets import Dataset, DatasetDict

    pictures = [png_bytes(COLOURS[name]) for name in ("red", "green", "blue")]
    dataset = Dataset.from_dict({"image": [{"bytes": data, "path": None} for data in pictures]})
    dataset.save_to_disk(tmp_path / "plain")
    DatasetDict({"train": dataset.select([0]), "test": dataset}).save_to_disk(tmp_path / "dict")
    plain = HFDatasetSource.load(str(tmp_path / "plain"))
    assert [plain[i].source for i in range(3)] == [f"{tmp_path / 'plain'}#{i}" for i in range(3)]
    test_split = HFDatasetSource.load(str(tmp_path / "dict"), split="test")
    assert len(test_split) == 3 and test_split[2].source == f"{tmp_path / 'dict'}[test]#2"
    with pytest.raises(ValueError, match="no split 'valid'; its splits: train, test"):
        HFDatasetSource.load(str(tmp_path / "dict"), split="valid")
    build_index(test_split, tmp_path / "index", pipeline, BuildConfig(workers=0), progress=False)
    service = service_over(Index(tmp_path / "index"), pipeline.models, None)
    hit = service.search_text("blue thing", 1)[0]
    assert hit.record.source == f"{tmp_path / 'dict'}[test]#2"
    assert service.index.original_path(hit.record).read_bytes() == pictures[2]


def test_a_100_megapixel_photo_is_indexed_and_a_bomb_is_not(
    pipeline: Pipeline, large_jpeg: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(large_jpeg, folder / "panorama.jpg")
    (folder / "bomb.png").write_bytes(bomb_header(30_000, 30_000))
    report = build_index(
        FolderSource(folder), tmp_path / "index", pipeline, BuildConfig(workers=0), progress=False
    )
    assert report.indexed == 1
    assert report.skipped == [{"source": "bomb.png", "reason": report.skipped[0]["reason"]}]
    assert "900000000 pixels, above the limit of 400000000" in report.skipped[0]["reason"]
    (record,) = Index(tmp_path / "index").records([0])
    assert (record.source, record.width, record.height) == ("panorama.jpg", 10_000, 10_000)
    with Image.open(live_path(tmp_path / "index") / "thumbnails" / f"{record.id}.jpg") as thumb:
        assert thumb.size == (256, 256) and thumb.convert("RGB").crop((128, 128, 129, 129)).tobytes()[0] > 200


def test_uploads_keep_their_pixel_limit(
    large_jpeg: Path, index_dir: Path, models: Models, tmp_path: Path
) -> None:
    settings = Settings(index_dir=index_dir, max_upload_mb=5, cache_dir=tmp_path, device="cpu")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        wait_ready(client)
        for path in ("/search/image", "/describe"):
            upload = {"image": ("large.jpg", large_jpeg.read_bytes(), "image/jpeg")}
            response = client.post(path, files=upload)
            assert response.status_code == 400, response.text
            assert "above the limit of 50000000" in response.json()["detail"]


def test_failed_build_leaves_the_existing_index_untouched(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
    before = (live_path(target) / "meta.json").read_text()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_bytes(b"not a png")
    with pytest.raises(ImgSearchError, match=r"no readable images.*the existing index was left as it was"):
        build_index(FolderSource(junk), target, pipeline, BuildConfig(workers=0), progress=False)
    assert (live_path(target) / "meta.json").read_text() == before and Index(target).count == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert len(list((target / "generations").iterdir())) == 1  # the failed build's generation is gone


def test_rebuild_replaces_the_index_in_place(pipeline: Pipeline, tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "g")
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
    (gallery / "red.png").unlink()
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
    assert Index(target).count == 2


def test_a_labeller_with_its_own_input_size_labels_the_build_and_leaves_the_features(
    gallery: Path, tmp_path: Path
) -> None:
    """An encoder that takes two inputs per picture (the packaged one: Lite0's 224 px for the features,
    Lite2's 260 px for the labels): the decode workers make both, the stored features are the plain
    encoder's, the labels are the labeller's, and a search by image computes the same features without
    running the labeller."""
    plain, labelled = fake_models(), fake_models()
    labeller = FakeLabelledEncoder()
    labeller.load(torch.device("cpu"), torch.float32)
    labelled.image = labeller
    cache, config = tmp_path / "cache", BuildConfig(pca_dim=0, workers=2)
    for name, models in (("plain", plain), ("labelled", labelled)):
        pipeline = Pipeline(models, make_bridge(models, BridgeParams(), cache))
        build_index(FolderSource(gallery), tmp_path / name, pipeline, config, progress=False)
    assert labeller.sizes == {(16, 24)}
    before, after = Index(tmp_path / "plain"), Index(tmp_path / "labelled")
    assert np.allclose(np.asarray(before.features), np.asarray(after.features), atol=1e-3)
    tops = {r.source: r.labels[0][0] for r in after.records([0, 1, 2])}
    assert tops["red.png"] != "red thing" and tops["sub/blue.webp"] != "blue thing"
    assert {r.source: r.labels[0][0] for r in before.records([0, 1, 2])}["red.png"] == "red thing"
    assert after.meta.models["labels"] == "fake-labeller" and "labels" not in before.meta.models
    service = service_over(after, labelled, cache)
    try:
        labeller.sizes.clear()
        hits = service.search_image(png_bytes(COLOURS["blue"], (30, 30)), top_k=1)
        assert hits[0].record.source == "sub/blue.webp"
        assert labeller.sizes == set()  # search by image needs the features alone: no labeller runs
        picture = Image.new("RGB", (40, 30), COLOURS["green"])
        both = service.pipeline.encode_images([picture]).features
        assert np.allclose(service.pipeline.image_features([picture]), both, atol=1e-6)
    finally:
        service.close()


def test_index_built_with_other_models_is_refused_naming_both(index_dir: Path, tmp_path: Path) -> None:
    other = fake_models(text_dim=32)
    other.profile = "packaged"
    with pytest.raises(IndexMismatch) as raised:
        service_over(Index(index_dir), other, tmp_path)
    message = str(raised.value)
    assert "index 'fake', service 'packaged'" in message and "index 64, service 32" in message


def test_partial_index_is_reported_not_loaded(index_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(live_path(index_dir), broken)
    (broken / "vectors.npy").unlink()
    with pytest.raises(IndexUnavailable, match="incomplete"):
        Index(broken)
    with pytest.raises(IndexUnavailable, match="no index"):
        Index(tmp_path / "missing")


def test_build_script_reports_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert build_script.main(["--images", str(tmp_path / "absent"), "--index-dir", str(tmp_path / "i")]) == 1
    with pytest.raises(SystemExit):
        build_script.main(["--images", str(tmp_path), "--index-dir", str(tmp_path / "i"), "--pca-dim", "-1"])


# -- the index folder is the project's alone -------------------------------------------------------


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(pipeline: Pipeline, tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "photos")
    target = tmp_path / "idx"
    target.mkdir()
    (target / "important.txt").write_text("precious")
    with pytest.raises(IndexDirRefused, match=r"holds files that are not an index \(important.txt\)"):
        build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
    assert listing(target) == {"important.txt": b"precious"} and sorted(tmp_path.iterdir()) == [
        target,
        gallery,
    ]


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        (lambda photos: photos, "is the images folder"),
        (lambda photos: photos / "index", "is inside the images folder"),
        (lambda photos: photos / "sub" / "index", "is inside the images folder"),
        (lambda photos: photos.parent, "is inside --index-dir"),
    ],
    ids=["same", "inside", "deep-inside", "parent"],
)
def test_an_index_folder_overlapping_the_images_is_refused_and_the_photos_survive(
    pipeline: Pipeline, tmp_path: Path, where: Any, fragment: str
) -> None:
    photos = make_gallery(tmp_path / "collection" / "photos")
    before = listing(tmp_path)
    target = where(photos)
    with pytest.raises(IndexDirRefused, match=fragment) as refused:
        build_index(FolderSource(photos), target, pipeline, BuildConfig(workers=0), progress=False)
    assert "choose one outside the images, e.g. --index-dir" in str(refused.value) and "\n" not in str(
        refused.value
    )
    assert listing(tmp_path) == before  # nothing deleted, nothing written (no lock file either)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir()) == ["collection", "photos", "sub"]


def test_the_cli_refuses_the_images_folder_as_index_with_one_line(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.build_ray

    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    photos = make_gallery(tmp_path / "photos")
    before = listing(photos)
    assert cli.main(["build", "--images", str(photos), "--index-dir", str(photos), "--workers", "0"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and "is the images folder" in errors[0] and "--index-dir" in errors[0]
    assert listing(photos) == before


def test_an_old_flat_index_is_moved_to_generations_keeping_other_files(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0, pca_dim=0), progress=False)
    flat = tmp_path / "flat"
    shutil.copytree(live_path(target), flat)  # what builds wrote before generations existed
    (flat / "readers.lock").unlink()
    (flat / "notes.txt").write_text("mine")
    assert Index(flat).generation is None and Index(flat).count == 3
    config = BuildConfig(workers=0, pca_dim=0)
    report = build_index(FolderSource(gallery), flat, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (3, 0)
    assert sorted(p.name for p in flat.iterdir()) == ["build.lock", "current", "generations", "notes.txt"]
    index = Index(flat)
    assert index.generation is not None and index.count == 3
    assert (flat / "notes.txt").read_text() == "mine"


def test_the_folder_walk_skips_an_index_inside_the_images(pipeline: Pipeline, tmp_path: Path) -> None:
    photos = make_gallery(tmp_path / "photos")
    target = tmp_path / "index"
    config = BuildConfig(workers=0, pca_dim=0)
    counts = [build_index(FolderSource(photos), target, pipeline, config, progress=False).indexed]
    shutil.copytree(target, photos / "old-index", symlinks=True)  # an index moved in by hand
    flat = photos / "older-index"
    shutil.copytree(live_path(target), flat)
    counts += [
        build_index(FolderSource(photos), target, pipeline, config, progress=False).indexed for _ in "ab"
    ]
    assert counts == [3, 3, 3]
    assert len(FolderSource(photos)) == 4  # 3 images and the corrupt one; no thumbnails


def test_a_failed_first_build_leaves_no_folder_and_no_lock(pipeline: Pipeline, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_bytes(b"not a png")
    target = tmp_path / "new" / "index"
    with pytest.raises(ImgSearchError, match="no readable images") as failed:
        build_index(FolderSource(junk), target, pipeline, BuildConfig(workers=0), progress=False)
    assert "no index was written" in str(failed.value) and "left as it was" not in str(failed.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]


def test_pca_skipped_says_why_with_plurals() -> None:
    assert pca_skipped(11, 384, 256) == (
        "PCA skipped: 11 images, and PCA to 256 dimensions needs more than 256 images; "
        "vectors kept at 384 dimensions"
    )
    assert pca_skipped(1, 384, 256).startswith("PCA skipped: 1 image, ")
    assert (
        pca_skipped(1000, 64, 256)
        == "PCA skipped: the vectors have 64 dimensions, not more than --pca-dim 256"
    )


def test_the_index_holds_what_the_pipeline_gives_byte_for_byte(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    config = BuildConfig(workers=0, pca_dim=0, batch_size=1)  # each image encoded alone, as below
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    index, live = Index(target), live_path(target)
    for record in index.records(list(range(index.count))):
        pixels = stack([pipeline.preprocess(decode(gallery / record.source))])
        encoded = pipeline.encode_pixels(pixels, config.label_k, project=False)
        assert index.vectors[record.row].tobytes() == encoded.vectors[0].astype(np.float16).tobytes()
        assert index.features[record.row].tobytes() == encoded.features[0].astype(np.float16).tobytes()
        assert record.labels == encoded.labels[0]
    for name in ("vectors.npy", "features.npy"):  # the .npy format numpy itself writes, byte for byte
        written = io.BytesIO()
        np.save(written, np.load(live / name))
        assert (live / name).read_bytes() == written.getvalue()


def test_a_later_stage_adds_to_the_served_generation_in_a_new_one(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0, pca_dim=0), progress=False)
    before = live_path(target)
    with build_lock(target), derived_generation(target, {"manifest.sqlite", "meta.json"}) as generation:
        with closing(sqlite3.connect(generation / "manifest.sqlite")) as db, db:
            db.execute("CREATE TABLE words (id TEXT)")
        publish(generation, target)
    after = live_path(target)
    assert after != before and Index(target).count == 3
    thumbnail = next((after / "thumbnails").iterdir())
    assert thumbnail.stat().st_ino == (before / "thumbnails" / thumbnail.name).stat().st_ino  # linked
    assert (after / "vectors.npy").stat().st_ino == (before / "vectors.npy").stat().st_ino
    tables = "SELECT name FROM sqlite_master WHERE name = 'words'"
    with closing(sqlite3.connect(before / "manifest.sqlite")) as db:
        assert db.execute(tables).fetchall() == []  # the served generation's manifest was not touched
    with closing(sqlite3.connect(after / "manifest.sqlite")) as db:
        assert db.execute(tables).fetchall() == [("words",)]
    with pytest.raises(RuntimeError), build_lock(target), derived_generation(target) as failed:
        raise RuntimeError("the stage failed")
    assert not failed.exists() and live_path(target) == after
