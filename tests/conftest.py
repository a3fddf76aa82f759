"""Shared fixtures: a tiny gallery, an index built with fake models, and a client over the app."""

from __future__ import annotations

import io
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app import concepts
from app.assembly import ServiceFactory, service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, BuildReport, build_index
from app.index import Index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.registry import make_bridge
from app.service import SearchService
from app.settings import Settings
from app.sources import FolderSource
from tests.fakes import COLOURS, fake_models

# Nothing in the tests may reach a model or dataset hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    """An image of one colour, encoded."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def coloured_pictures(folder: Path, count: int, seed: int) -> Path:
    """`count` two-colour pictures of varied sizes and formats (PNG, JPEG, WebP) in four folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        width, height = (int(v) for v in rng.integers(12, 90, 2))
        picture = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
        ImageDraw.Draw(picture).rectangle(
            (0, 0, width // 2, height), fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
        fmt, suffix = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")][i % 3]
        target = folder / f"set{i % 4}" / f"{i:03d}.{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, format=fmt)
    return folder


def make_gallery(root: Path) -> Path:
    """red.png, green.jpg, blue.webp in nested folders, plus one corrupt file."""
    (root / "sub").mkdir(parents=True)
    (root / "red.png").write_bytes(png_bytes(COLOURS["red"], (60, 40)))
    (root / "sub" / "green.jpg").write_bytes(png_bytes(COLOURS["green"], (300, 400), "JPEG"))
    (root / "sub" / "blue.webp").write_bytes(png_bytes(COLOURS["blue"], (50, 50), "WEBP"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


@pytest.fixture(scope="session")
def large_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10000×10000 (100 MP) red JPEG, as a phone or camera makes them (about 1.5 MB)."""
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    Image.new("RGB", (10_000, 10_000), COLOURS["red"]).save(path, quality=50)
    return path


def bomb_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels over a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def models() -> Models:
    """Fake models, loaded once."""
    return fake_models()


@pytest.fixture(scope="session")
def pipeline(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The shared encode path over the fake models."""
    cache = tmp_path_factory.mktemp("cache")
    return Pipeline(models, make_bridge(models, BridgeParams(), cache), flip=True)


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny gallery folder."""
    return make_gallery(tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="session")
def built(
    gallery: Path, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildReport]:
    """An index of the gallery and its build report."""
    index_dir = tmp_path_factory.mktemp("idx") / "index"
    report = build_index(
        FolderSource(gallery), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    return index_dir, report


@pytest.fixture(scope="session")
def index_dir(built: tuple[Path, BuildReport]) -> Path:
    """Directory of the built index."""
    return built[0]


def ids_by_source(index_dir: Path) -> dict[str, str]:
    """The image id of each indexed file, by its source."""
    index = Index(index_dir)
    try:
        return {record.source: record.id for record in index.records(list(range(index.count)))}
    finally:
        index.close()


def service_factory(models: Models, cache: Path) -> ServiceFactory:
    """A factory the app calls in its lifespan instead of loading real models."""

    def factory(settings: Settings) -> SearchService:
        if models.lm is not None:
            concepts.warm()  # as app.registry does with a real language model
        index = Index(settings.index_dir, settings.search_options())
        return service_over(
            index,
            models,
            cache,
            max_pixels=settings.max_image_pixels,
            dedup_threshold=settings.dedup_threshold,
        )

    return factory


def gated_factory(models: Models, cache: Path, release: threading.Event) -> ServiceFactory:
    """A factory whose warm-up waits until the test sets `release` (at most 30 s)."""
    inner = service_factory(models, cache)

    def factory(settings: Settings) -> SearchService:
        release.wait(30)
        return inner(settings)

    return factory


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll /readyz until 200."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.02)


@pytest.fixture
def settings(index_dir: Path, tmp_path: Path) -> Settings:
    """Settings pointing at the tiny index, with a small upload limit."""
    return Settings(index_dir=index_dir, max_upload_mb=1, cache_dir=tmp_path / "cache", device="cpu")


@pytest.fixture
def client(settings: Settings, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over the app with fake models."""
    app = create_app(settings, factory=service_factory(models, tmp_path / "cache"))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def dated_exif(taken: str, gps: bool = False, camera: tuple[str, str] | None = None) -> Image.Exif:
    """EXIF with a DateTimeOriginal ("YYYY:MM:DD HH:MM:SS") and, when asked, a position in Paris and
    a camera (make, model)."""
    from PIL import TiffImagePlugin

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken
    if camera is not None:
        exif[0x010F], exif[0x0110] = camera
    if gps:
        place = exif.get_ifd(0x8825)
        place[1], place[3] = "N", "E"
        place[2] = tuple(TiffImagePlugin.IFDRational(v) for v in (48, 51, 30))
        place[4] = tuple(TiffImagePlugin.IFDRational(v) for v in (2, 17, 40))
    return exif


# name → (colour, size, EXIF date or None, GPS, mtime as YYYY-MM-DD)
COLLECTION: dict[str, tuple[str, tuple[int, int], str | None, bool, str]] = {
    "paris/eiffel-tower.jpg": ("green", (300, 200), "2019:07:14 10:00:00", True, "2024-01-01"),
    "paris/louvre.png": ("green", (120, 90), None, False, "2021-03-01"),
    "2020/beach/dog_on_beach.jpg": ("blue", (200, 300), "2020:08:01 16:30:00", False, "2024-01-01"),
    "2020/beach/sunset.webp": ("red", (64, 48), None, False, "2020-08-02"),
    "2020/red-car.png": ("red", (80, 60), None, False, "2020-05-05"),
    "a8f3c2.jpg": ("blue", (90, 90), "2018:02:03 04:05:06", False, "2024-01-01"),
}
CAMERAS = {  # the EXIF make and model of some of them
    "paris/eiffel-tower.jpg": ("Canon", "Canon EOS 80D"),
    "2020/beach/dog_on_beach.jpg": ("NIKON CORPORATION", "NIKON D750"),
}


def make_collection(root: Path) -> Path:
    """A small photo collection: folders, telling names, EXIF dates, one GPS position, file times."""
    import datetime as dt

    for name, (colour, size, taken, gps, mtime) in COLLECTION.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.new("RGB", size, COLOURS[colour])
        fmt = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix]
        extra = {"exif": dated_exif(taken, gps, CAMERAS.get(name))} if taken else {}
        picture.save(path, format=fmt, **extra)
        stamp = dt.datetime.fromisoformat(mtime).timestamp()
        os.utime(path, (stamp, stamp))
    return root
