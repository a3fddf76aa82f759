"""The catalog a build writes: metadata and lexical tables in every generation, kept by --update."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from app.assembly import service_over
from app.build import BuildConfig, build_index
from app.catalog import Catalog
from app.errors import Conflict
from app.filters import Filters
from app.index import MANIFEST, Index, live_path
from app.pipeline import Pipeline
from app.sources import FolderSource, HFDatasetSource
from tests.conftest import make_collection
from tests.fakes import COLOURS

CONFIG = BuildConfig(pca_dim=0, workers=0)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photo collection of tests/conftest.py."""
    return make_collection(tmp_path_factory.mktemp("photos"))


def build(images: Path, index_dir: Path, pipeline: Pipeline, update: bool = False) -> Index:
    """Build (or update) an index of a folder and open it."""
    build_index(FolderSource(images), index_dir, pipeline, CONFIG, progress=False, update=update)
    return Index(index_dir)


def closed(catalog: Catalog) -> None:
    """Close a catalog and its index."""
    catalog.close()
    catalog.index.close()


def by_name(index: Index) -> dict[str, int]:
    """Row of each indexed source."""
    return {record.source: record.row for record in index.records(list(range(index.count)))}


def test_build_stores_each_images_metadata(collection: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    index = build(collection, tmp_path / "index", pipeline)
    catalog = Catalog(index)
    rows = by_name(index)
    stored = catalog.metadata(list(rows.values()))
    eiffel = stored[rows["paris/eiffel-tower.jpg"]]
    assert (eiffel.folder, eiffel.name, eiffel.format, eiffel.width, eiffel.height) == (
        "paris",
        "eiffel-tower.jpg",
        "JPEG",
        300,
        200,
    )
    assert eiffel.taken_at == datetime(2019, 7, 14, 10) and eiffel.taken_at_source == "exif_original"
    assert eiffel.has_gps and eiffel.latitude == pytest.approx(48.858, abs=1e-3)
    louvre = stored[rows["paris/louvre.png"]]
    assert louvre.taken_at_source == "mtime" and louvre.taken_at is not None
    assert louvre.taken_at.date().isoformat() == "2021-03-01"
    assert eiffel.camera_make == "Canon" and eiffel.camera_model == "Canon EOS 80D"
    assert catalog.folders() == [("", 1), ("2020", 1), ("2020/beach", 2), ("paris", 2)]
    closed(catalog)


def test_filters_select_rows_in_sql(collection: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    index = build(collection, tmp_path / "index", pipeline)
    catalog = Catalog(index)
    rows = by_name(index)

    def names(**given: object) -> set[str]:
        found = catalog.allowed_rows(Filters.parse(**given))
        assert found is not None
        return {source for source, row in rows.items() if row in set(found.tolist())}

    assert names(path_prefix="2020") == {
        "2020/beach/dog_on_beach.jpg",
        "2020/beach/sunset.webp",
        "2020/red-car.png",
    }
    assert names(path_prefix="2020/beach/") == {"2020/beach/dog_on_beach.jpg", "2020/beach/sunset.webp"}
    assert names(taken_after="2020-01-01", taken_before="2020-12-31") == {
        "2020/beach/dog_on_beach.jpg",
        "2020/beach/sunset.webp",
        "2020/red-car.png",
    }
    assert names(formats=["png"]) == {"paris/louvre.png", "2020/red-car.png"}
    assert names(min_height=250) == {"2020/beach/dog_on_beach.jpg"}
    assert names(has_gps=True) == {"paris/eiffel-tower.jpg"}
    assert names(camera="nikon d7") == {"2020/beach/dog_on_beach.jpg"}
    assert names(path_prefix="PARIS") == {"paris/eiffel-tower.jpg", "paris/louvre.png"}
    assert catalog.allowed_rows(Filters()) is None
    closed(catalog)


def test_lexical_tables_find_names_and_folders(collection: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    index = build(collection, tmp_path / "index", pipeline)
    catalog = Catalog(index)
    rows = by_name(index)
    hits = catalog.search_text("Eiffel Tower", 5, None)
    assert hits[0].row == rows["paris/eiffel-tower.jpg"] and hits[0].matched == ("name",)
    assert {hit.row for hit in catalog.search_text("beach", 5, None)} == {
        rows["2020/beach/dog_on_beach.jpg"],
        rows["2020/beach/sunset.webp"],
    }
    closed(catalog)


def test_update_rebuilds_the_catalog_of_the_new_generation(
    collection: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    for path in collection.rglob("*"):
        if path.is_file():
            target = images / path.relative_to(collection)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    build(images, tmp_path / "index", pipeline).close()
    (images / "paris" / "louvre.png").unlink()
    Image.new("RGB", (30, 30), COLOURS["red"]).save(images / "paris" / "notre-dame.png")
    index = build(images, tmp_path / "index", pipeline, update=True)
    catalog = Catalog(index)
    assert catalog.folders() == [("", 1), ("2020", 1), ("2020/beach", 2), ("paris", 2)]
    rows = by_name(index)
    assert [hit.row for hit in catalog.search_text("notre dame", 5, None)] == [rows["paris/notre-dame.png"]]
    assert catalog.search_text("louvre", 5, None) == []
    assert len(catalog.metadata(list(rows.values()))) == index.count
    closed(catalog)


def test_an_index_without_a_catalog_searches_but_refuses_filters(
    collection: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    build(collection, tmp_path / "index", pipeline).close()
    manifest = live_path(tmp_path / "index") / MANIFEST
    with sqlite3.connect(manifest) as db:  # as an index built before the catalog
        db.executescript("DROP TABLE metadata; DROP TABLE lexical_words; DROP TABLE lexical_grams;")
    db.close()
    service = service_over(Index(tmp_path / "index"), pipeline.models, None)
    assert service.search_text("red thing", 3)
    with pytest.raises(Conflict, match=r"imgsearch build .*--update"):
        service.catalog.allowed_rows(Filters.parse(path_prefix="paris"))
    with pytest.raises(Conflict, match="--update"):
        service.catalog.folders()
    service.close()
    upgraded = Catalog(build(collection, tmp_path / "index", pipeline, update=True))
    assert upgraded.present and len(upgraded.folders()) == 4
    closed(upgraded)


def test_dataset_text_columns_are_indexed(pipeline: Pipeline, tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Sequence, Value

    features = Features(
        {
            "image": ImageFeature(),
            "caption": Value("string"),
            "objects": Sequence({"name": ClassLabel(names=["cat", "dog", "bicycle"])}),
        }
    )
    pictures = [Image.new("RGB", (20, 10), COLOURS[name]) for name in ("red", "green")]
    dataset = Dataset.from_dict(
        {
            "image": pictures,
            "caption": ["a cat asleep on a sofa", "a ride in the park"],
            "objects": [{"name": [0]}, {"name": [1, 2]}],
        },
        features=features,
    )
    source = HFDatasetSource(dataset, "image", name="pets", text_columns=["caption", "objects"])
    build_index(source, tmp_path / "index", pipeline, CONFIG, progress=False)
    catalog = Catalog(Index(tmp_path / "index"))
    hits = catalog.search_text("bicycle", 5, None)
    assert [catalog.index.records([hit.row])[0].source for hit in hits] == ["pets#1"]
    assert hits[0].matched == ("metadata",)
    stored = catalog.metadata([hits[0].row])[hits[0].row]
    assert stored.description == "a ride in the park" and stored.keywords == ("dog", "bicycle")
    assert (stored.folder, stored.name, stored.width) == ("", "pets#1", 20)
    closed(catalog)
    with pytest.raises(ValueError, match=r"no column 'labels' \(--text-column\)"):
        HFDatasetSource(dataset, "image", text_columns=["labels"])
