"""What phones and cameras write — HEIC/HEIF, AVIF, JPEG XL, camera RAW — is indexed with its EXIF, shown
to browsers as a JPEG where they cannot show it, and a RAW beside its JPEG is that JPEG's alternate."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, features

from app import formats
from app.build import BuildConfig, build_index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from app.writing import BuildReport
from tests.conftest import dated_exif, ids_by_source, service_factory, wait_ready

TAKEN = "2021:06:05 04:03:02"
CAMERA = ("Canon", "Canon EOS R5")
# file name → (format as stored, Content-Type of the original, Content-Type of /view, GPS written)
PHONE_FILES: dict[str, tuple[str, str, str, bool]] = {
    "IMG_0001.HEIC": ("HEIF", "image/heic", "image/jpeg", True),
    "IMG_0002.avif": ("AVIF", "image/avif", "image/avif", True),  # browsers show AVIF as it is
    "IMG_0003.jxl": ("JXL", "image/jxl", "image/jpeg", True),  # Chrome shows no JPEG XL
    "IMG_0004.dng": ("DNG", "image/x-adobe-dng", "image/jpeg", False),  # pidng writes no GPS
}


def needs(fmt: str) -> None:
    """Skip, with the reason, unless this process can write and read the format."""
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    for module in {"HEIF": ["pillow_heif"], "JXL": ["pillow_jxl"], "DNG": ["rawpy", "pidng"]}.get(fmt, []):
        pytest.importorskip(module, reason=f"{module} is not installed")


def write_dng(path: Path, size: tuple[int, int] = (128, 96)) -> bytes:
    """A camera RAW (DNG) of a Bayer mosaic, with the EXIF date and camera in its IFD0 (pidng)."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    width, height = size
    mosaic = np.random.default_rng(len(path.name)).integers(0, 4095, (height, width)).astype(np.uint16)
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, width),
        (Tag.ImageLength, height),
        (Tag.TileWidth, width),
        (Tag.TileLength, height),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1),
        (Tag.BitsPerSample, 12),
        (Tag.CFARepeatPatternDim, [2, 2]),
        (Tag.CFAPattern, CFAPattern.BGGR),
        (Tag.BlackLevel, 0),
        (Tag.WhiteLevel, 4095),
        (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
        (Tag.Make, CAMERA[0]),
        (Tag.Model, CAMERA[1]),
        (Tag.DateTimeOriginal, TAKEN),
        (Tag.DNGVersion, DNGVersion.V1_4),
        (Tag.DNGBackwardVersion, DNGVersion.V1_2),
    ]:
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    data = bytes(writer.convert(mosaic))
    path.write_bytes(data)
    return data


def write_shot(path: Path, fmt: str, shade: int) -> None:
    """A 60×40 picture with the EXIF date, camera and a position in Paris, in `fmt` (DNG: see write_dng)."""
    if fmt == "DNG":
        write_dng(path)
        return
    picture = Image.new("RGB", (60, 40), (shade, 200, 255 - shade))
    picture.save(path, format=fmt, exif=dated_exif(TAKEN, gps=True, camera=CAMERA).tobytes())


def build(gallery: Path, target: Path, pipeline: Pipeline) -> BuildReport:
    """Index the folder."""
    config = BuildConfig(pca_dim=0, workers=0)
    return build_index(FolderSource(gallery), target, pipeline, config, progress=False)


@contextmanager
def serving(index_dir: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over the index."""
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path / "cache", device="cpu")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize("name", list(PHONE_FILES))
def test_each_format_is_indexed_with_its_exif_thumbnail_and_media_types(
    name: str, pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    stored, original_type, view_type, has_gps = PHONE_FILES[name]
    needs(stored)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    write_shot(gallery / name, stored, 40)
    Image.new("RGB", (30, 20), (250, 10, 10)).save(gallery / "other.png")
    report = build(gallery, tmp_path / "index", pipeline)
    assert (report.indexed, report.skipped, report.notes) == (2, [], [])
    shot = ids_by_source(tmp_path / "index")[name]
    with serving(tmp_path / "index", models, tmp_path) as client:
        meta = client.get(f"/images/{shot}/metadata").json()
        assert (meta["format"], meta["taken_at"], meta["taken_at_source"]) == (
            stored,
            "2021-06-05T04:03:02",
            "exif_original",
        )
        assert (meta["camera_make"], meta["camera_model"]) == CAMERA
        assert (meta["latitude"] is not None) == has_gps
        if has_gps:
            assert (round(meta["latitude"], 2), round(meta["longitude"], 2)) == (48.86, 2.29)
        size = (meta["width"], meta["height"])
        assert meta["alternates"] == [] and meta["view_url"] == f"/images/{shot}/view"

        original = client.get(f"/images/{shot}")
        assert original.status_code == 200 and original.headers["content-type"] == original_type
        assert original.content == (gallery / name).read_bytes()

        thumb = client.get(f"/images/{shot}/thumbnail")
        assert thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as opened:
            assert opened.format == "JPEG" and opened.size == size

        view = client.get(f"/images/{shot}/view")
        assert view.status_code == 200 and view.headers["content-type"] == view_type
        with Image.open(io.BytesIO(view.content)) as opened:
            assert opened.size == size
        again = client.get(f"/images/{shot}/view", headers={"If-None-Match": view.headers["etag"]})
        assert again.status_code == 304

        found = client.get("/search", params={"q": "a photo", "format": name.rsplit(".", 1)[1].lower()})
        assert [result["id"] for result in found.json()["results"]] == [shot]

        if stored != "DNG":  # a phone's photo is also a query: search by its upload
            upload = {"image": (name, (gallery / name).read_bytes(), original_type)}
            alike = client.post("/search/image", files=upload, data={"top_k": "1"})
            assert alike.status_code == 200, alike.text
            assert alike.json()["results"][0]["id"] == shot


def test_a_raw_beside_its_jpeg_is_one_result_with_the_raw_as_alternate(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    pytest.importorskip("pidng", reason="pidng is not installed")
    gallery = tmp_path / "gallery"
    (gallery / "trip").mkdir(parents=True)
    jpeg = gallery / "trip" / "IMG_0042.JPG"
    Image.new("RGB", (90, 60), (20, 120, 220)).save(jpeg, exif=dated_exif(TAKEN, camera=CAMERA).tobytes())
    raw = write_dng(gallery / "trip" / "IMG_0042.dng")
    write_dng(gallery / "trip" / "IMG_0099.DNG")  # no JPEG of this shot: a result of its own
    Image.new("RGB", (30, 20), (250, 10, 10)).save(gallery / "other.png")
    report = build(gallery, tmp_path / "index", pipeline)
    ids = ids_by_source(tmp_path / "index")
    dng = formats.format_of("DNG")
    assert dng is not None
    expected = {"trip/IMG_0042.JPG", "other.png"}
    if formats.unavailable(dng) is None:
        expected.add("trip/IMG_0099.DNG")
    assert set(ids) == expected and report.encoded == len(expected)  # the pair is encoded once
    shot = ids["trip/IMG_0042.JPG"]
    with serving(tmp_path / "index", models, tmp_path) as client:
        results = client.get("/search", params={"q": "a photo", "limit": 10}).json()["results"]
        assert sorted(result["source"] for result in results) == sorted(expected)  # one result per shot
        meta = client.get(f"/images/{shot}/metadata").json()
        assert meta["format"] == "JPEG" and meta["taken_at"] == "2021-06-05T04:03:02"
        assert meta["alternates"] == [
            {
                "name": "IMG_0042.dng",
                "format": "DNG",
                "media_type": "image/x-adobe-dng",
                "url": f"/images/{shot}/alternates/0",
            }
        ]
        served = client.get(meta["alternates"][0]["url"])
        assert served.status_code == 200 and served.content == raw
        assert served.headers["content-type"] == "image/x-adobe-dng"
        assert client.get(f"/images/{shot}/alternates/1").status_code == 404
        shown = client.get(f"/images/{shot}/view")  # the JPEG is what is shown
        assert shown.headers["content-type"] == "image/jpeg" and shown.content == jpeg.read_bytes()


def test_an_unreadable_raw_is_a_reported_skip_and_a_broken_one_is_not_a_500(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    needs("DNG")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    (gallery / "broken.NEF").write_bytes(b"II*\x00" + bytes(range(256)) * 40)
    write_dng(gallery / "fine.dng")
    report = build(gallery, tmp_path / "index", pipeline)
    assert report.indexed == 1
    assert [skip["source"] for skip in report.skipped] == ["broken.NEF"]
    assert "camera RAW" in report.skipped[0]["reason"]
    fine = ids_by_source(tmp_path / "index")["fine.dng"]
    (gallery / "fine.dng").write_bytes(b"II*\x00 no longer a photo")  # changed since the build
    with serving(tmp_path / "index", models, tmp_path) as client:
        response = client.get(f"/images/{fine}/view")
        assert response.status_code == 409 and "cannot be shown" in response.json()["detail"]


def test_a_format_whose_plugin_is_missing_is_reported_once_per_build(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    formats.load_plugins()
    monkeypatch.setitem(formats._LOADED, "pillow-heif", "pillow-heif not installed")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("a.heic", "b.HEIC", "c.heif"):
        (gallery / name).write_bytes(b"\x00\x00\x00\x18ftypheic not decoded")
    Image.new("RGB", (30, 20), (250, 10, 10)).save(gallery / "other.png")
    with caplog.at_level(logging.WARNING):
        report = build(gallery, tmp_path / "index", pipeline)
    assert report.indexed == 1
    assert report.notes == ["3 HEIF files skipped: pillow-heif not installed"]
    assert sorted(skip["source"] for skip in report.skipped) == ["a.heic", "b.HEIC", "c.heif"]
    assert all(skip["reason"] == "pillow-heif not installed" for skip in report.skipped)
    assert [r.getMessage() for r in caplog.records].count(report.notes[0]) == 1


def tiff_of(exif: Image.Exif) -> bytes:
    """The TIFF structure of an EXIF block (what a RAW file and a CR3's CMT boxes hold)."""
    return exif.tobytes()[len(b"Exif\x00\x00") :]


def box(kind: bytes, payload: bytes) -> bytes:
    """An ISO base media box."""
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_the_exif_of_cr3_orf_and_rw2_files_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import TiffImagePlugin

    from app import metadata

    monkeypatch.setattr(metadata, "raw_size", lambda data: (6000, 4000))  # rawpy reads no made-up file
    full = dated_exif(TAKEN, gps=True, camera=CAMERA)
    full.endian = "<"  # Olympus and Panasonic write little-endian TIFFs under their own magic
    ifd0 = Image.Exif()
    ifd0[0x010F], ifd0[0x0110] = CAMERA
    taken = Image.Exif()
    taken[0x9003] = TAKEN
    place = Image.Exif()
    place[1], place[3] = "N", "E"
    place[2] = tuple(TiffImagePlugin.IFDRational(v) for v in (48, 51, 30))
    place[4] = tuple(TiffImagePlugin.IFDRational(v) for v in (2, 17, 40))
    canon = box(
        b"uuid",
        bytes(16) + b"".join(box(b"CMT%d" % n, tiff_of(e)) for n, e in [(1, ifd0), (2, taken), (4, place)]),
    )
    files = {
        "IMG_1.CR3": box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + box(b"moov", canon) + bytes(64),
        "P1.ORF": b"IIRO" + tiff_of(full)[4:],
        "P1.RW2": b"IIU\x00" + tiff_of(full)[4:],
    }
    for name, data in files.items():
        meta = metadata.read_raw_metadata(data, f"cameras/{name}", None, name.rsplit(".", 1)[1])
        assert (meta.format, meta.folder, meta.width, meta.height) == (name[-3:], "cameras", 6000, 4000)
        assert meta.taken_at is not None and meta.taken_at.isoformat() == "2021-06-05T04:03:02", name
        assert (meta.camera_make, meta.camera_model) == CAMERA, name
        assert (round(meta.latitude or 0, 2), round(meta.longitude or 0, 2)) == (48.86, 2.29), name


class FakeRaw:
    """What rawpy.imread gives, for a RAW whose embedded preview is `preview` (JPEG bytes)."""

    def __init__(self, preview: bytes, size: tuple[int, int], flip: int) -> None:
        import rawpy

        self.preview, self.flip, self.developed = preview, flip, False
        self.sizes = type("Sizes", (), {"width": size[0], "height": size[1], "flip": flip})()
        self.thumb = type("Thumb", (), {"format": rawpy.ThumbFormat.JPEG, "data": preview})()

    def __enter__(self) -> FakeRaw:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def extract_thumb(self) -> object:
        return self.thumb

    def postprocess(self, **options: object) -> np.ndarray:
        self.developed = True
        width, height = self.sizes.width, self.sizes.height
        shape = (width, height) if self.flip in {5, 6} else (height, width)
        return np.full((*shape, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize(
    ("preview_size", "developed"), [((1200, 800), False), ((160, 120), True)], ids=["preview", "demosaic"]
)
def test_a_raw_is_read_from_its_preview_when_large_enough_else_demosaiced(
    preview_size: tuple[int, int], developed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rawpy = pytest.importorskip("rawpy", reason="rawpy is not installed")
    from app.camera_raw import decode_raw

    jpeg = io.BytesIO()
    Image.new("RGB", preview_size, (200, 30, 30)).save(jpeg, format="JPEG")
    fake = FakeRaw(jpeg.getvalue(), (6000, 4000), flip=6)  # held upright: a portrait photo
    monkeypatch.setattr(rawpy, "imread", lambda source: fake)
    picture, size = decode_raw(b"raw bytes", 50_000_000, 512)
    assert size == (4000, 6000) and fake.developed == developed
    assert picture.width < picture.height  # turned upright, preview or not
    assert min(picture.size) >= 512


def test_the_command_line_says_once_which_format_it_skipped_and_why(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app import build_ray, cli

    formats.load_plugins()
    monkeypatch.setitem(formats._LOADED, "pillow-heif", "pillow-heif not installed")
    monkeypatch.setattr(build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("a.heic", "b.heic"):
        (gallery / name).write_bytes(b"\x00\x00\x00\x18ftypheic not decoded")
    Image.new("RGB", (30, 20), (250, 10, 10)).save(gallery / "other.png")
    argv = ["build", "--images", str(gallery), "--index-dir", str(tmp_path / "index"), "--pca-dim", "0"]
    assert cli.main([*argv, "--workers", "0"]) == 0
    out, err = capsys.readouterr()
    assert "2 HEIF files skipped: pillow-heif not installed" in err.splitlines()
    assert "a.heic" not in err and "indexed 1 images" in out
