"""Every format the build indexes is served as itself: Content-Type from app/formats.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.build import BuildConfig, build_index
from app.formats import FORMATS, media_type, stored_name
from app.index import Index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import service_factory, wait_ready

# file name → (Pillow format to save with, image mode, media type a browser needs to show it)
FILES: dict[str, tuple[str, str, str]] = {
    "photo.jpg": ("JPEG", "RGB", "image/jpeg"),
    "phone.jpg": ("MPO", "RGB", "image/jpeg"),  # a phone's multi-picture JPEG
    "drawing.png": ("PNG", "RGB", "image/png"),
    "web.webp": ("WEBP", "RGB", "image/webp"),
    "anim.gif": ("GIF", "RGB", "image/gif"),
    "old.bmp": ("BMP", "RGB", "image/bmp"),
    "scan.tif": ("TIFF", "RGB", "image/tiff"),
    "pixmap.ppm": ("PPM", "RGB", "image/x-portable-anymap"),
    "greys.pgm": ("PPM", "L", "image/x-portable-anymap"),
    "bits.pbm": ("PPM", "1", "image/x-portable-anymap"),
}


def write_picture(path: Path, fmt: str, mode: str, shade: int) -> None:
    """A small picture of its own colour (no two files alike) in a format."""
    picture = Image.new("RGB", (24, 16), (shade, 255 - shade, (shade * 7) % 256)).convert(mode)
    if fmt == "MPO":
        second = Image.new("RGB", (24, 16), (0, 0, shade))
        picture.save(path, format="MPO", save_all=True, append_images=[second])
    else:
        picture.save(path, format=fmt)


@pytest.fixture
def every_format(pipeline: Pipeline, tmp_path: Path) -> Path:
    """An index of one file per format the build takes."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for shade, (name, (fmt, mode, _)) in enumerate(FILES.items()):
        write_picture(gallery / name, fmt, mode, 20 * shade + 10)
    target = tmp_path / "index"
    report = build_index(
        FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    assert (report.indexed, report.skipped) == (len(FILES), [])
    return target


def test_originals_are_sent_as_their_format_before_the_server_decoded_anything(
    every_format: Path, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh server has loaded no Pillow plugin yet, so Pillow's own table of media types is empty.
    monkeypatch.setattr(Image, "MIME", {})
    index = Index(every_format)
    ids = {record.source: record.id for record in index.records(list(range(index.count)))}
    index.close()
    settings = Settings(index_dir=every_format, cache_dir=tmp_path / "cache", device="cpu")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        for name, (_, _, expected) in FILES.items():
            response = client.get(f"/images/{ids[name]}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == expected, name
            assert response.headers["x-content-type-options"] == "nosniff"
            with Image.open(io.BytesIO(response.content)) as opened:  # the file's own bytes
                assert stored_name(opened.format) == stored_name(FILES[name][0])


def test_every_format_has_one_row_with_its_media_type_and_suffixes() -> None:
    names = [name for fmt in FORMATS for name in (fmt.name, *fmt.also)]
    suffixes = [suffix for fmt in FORMATS for suffix in fmt.suffixes]
    assert len(names) == len(set(names)) and len(suffixes) == len(set(suffixes))
    assert all(fmt.media_type.startswith("image/") for fmt in FORMATS)
    assert media_type("mpo") == "image/jpeg" and stored_name("MPO") == "JPEG"
    assert media_type(None) == media_type("PSD") == "application/octet-stream"
