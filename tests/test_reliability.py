"""Reliability: hostile input never topples the service, uploads leave nothing behind, the index survives
killed and concurrent builds, reloads swap it without dropping requests, and start-up failures are
one clear line. Complements tests/test_api.py (cases covered there are not repeated here).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.api.schemas import NON_BLANK
from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.errors import BuildLocked
from app.index import Index, live_path
from app.main import create_app
from app.pipeline import Encoded, Models, Pipeline
from app.registry import make_bridge
from app.service import SearchService
from app.settings import Settings
from app.sources import FolderSource, HFDatasetSource
from tests.conftest import gated_factory, make_gallery, png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS, fake_models
from tests.test_api import bomb_png

REPO = Path(__file__).resolve().parent.parent
KEY = "s3cret-admin-key"
YELLOW = (220, 220, 20)


# -- helpers ---------------------------------------------------------------------------------------


class Reply(Protocol):
    """What these tests read of a TestClient response (httpx or httpx2, whichever Starlette uses)."""

    @property
    def status_code(self) -> int:
        """HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers."""

    @property
    def text(self) -> str:
        """Body as text."""

    @property
    def request(self) -> Any:
        """The request that was sent."""

    def json(self) -> Any:
        """Body parsed as JSON."""


def assert_clear_4xx(response: Reply, status: int, fragment: str) -> None:
    """The status, a JSON body with a short one-line detail naming the problem, and no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert fragment in detail, detail
    assert len(detail) < 300 and "\n" not in detail and "Traceback" not in response.text


def assert_healthy(client: TestClient) -> None:
    """Alive, and a normal search still answers correctly."""
    assert client.get("/healthz").status_code == 200
    search = client.post("/search", json={"query": "red thing", "top_k": 1})
    assert search.status_code == 200 and "red" in search.json()["results"][0]["source"], search.text


def upload(data: bytes, name: str = "x.bin", media: str = "application/octet-stream") -> dict[str, Any]:
    """`files=` for an upload in the field `image`."""
    return {"image": (name, data, media)}


def encoded(picture: Image.Image, fmt: str, **options: Any) -> bytes:
    """A picture saved in a format."""
    out = io.BytesIO()
    picture.save(out, format=fmt, **options)
    return out.getvalue()


def zip_bytes() -> bytes:
    """A small zip archive."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not an image")
    return out.getvalue()


def png16(rgb: bool) -> bytes:
    """A 16-bit PNG, red (RGB) or light grey (greyscale); Pillow cannot write 16-bit RGB itself."""
    width = height = 12
    channels, colour_type = (3, 2) if rgb else (1, 0)
    pixel = np.array([65535, 0, 0] if rgb else [50000], dtype=">u2")
    rows = b"".join(b"\x00" + np.tile(pixel, width).tobytes() for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        """A PNG chunk with its length and CRC."""
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, colour_type, 0, 0, 0])
    assert channels in {1, 3}
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    """Two frames: red, then blue."""
    frames = [Image.new("RGB", (24, 24), COLOURS[name]) for name in ("red", "blue")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def client_for(settings: Settings, models: Models) -> TestClient:
    """A TestClient over an app with the fake models (enter it with `with`)."""
    return TestClient(create_app(settings, factory=service_factory(models, settings.cache_dir)))


# -- 1. the bad-input matrix -----------------------------------------------------------------------

JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
RAW_PNG = {"content-type": "image/png"}
NO_BOUNDARY = {"content-type": "multipart/form-data"}
PNG = png_bytes(COLOURS["red"])
AN_IMAGE = upload(PNG)
A_ZIP = upload(zip_bytes(), "a.zip", "application/zip")
A_BOMB = upload(bomb_png(), "bomb.png", "image/png")
A_CUT_GIF = upload(animated_gif()[:100], "a.gif", "image/gif")  # header intact, frame cut
DEEP = b"[" * 100_000 + b"]" * 100_000


def bad(name: str, request: str, status: int, fragment: str, **kwargs: Any) -> Any:
    """One row of the matrix: `METHOD /path`, httpx keyword arguments, and the 4xx it must get."""
    method, path = request.split(" ", 1)
    return pytest.param(method, path, kwargs, status, fragment, id=name)


BAD_REQUESTS = [
    # queries (httpx refuses URLs whose query is above 64 KiB: the GET form is tested at 60 KB)
    bad("query-100kb", "POST /search", 422, "at most 1000", json={"query": "x" * 100_000}),
    bad("query-60kb-get", "GET /search", 422, "at most 1000", params={"q": "x" * 60_000}),
    bad("query-empty-get", "GET /search?q=", 422, "q: String should have at least 1 character"),
    bad("query-blank-get", "GET /search?q=%20%09%E3%80%80", 422, "non-space"),
    bad("query-non-utf8-get", "GET /search?q=caf%E9", 422, "not valid UTF-8"),
    bad(
        "query-non-utf8-describe",
        "POST /describe",
        422,
        "not valid JSON",
        content=b'{"query": "caf\xe9"}',
        headers=JSON,
    ),
    bad(
        "query-lone-surrogate",
        "POST /search",
        422,
        "valid string",
        content=b'{"query": "\\ud800"}',
        headers=JSON,
    ),
    bad("query-blank-describe", "POST /describe", 422, "non-space", json={"query": "\u3000\x1c"}),
    # top_k and offset
    bad("top_k-negative", "POST /search", 422, "top_k", json={"query": "red", "top_k": -1}),
    bad("top_k-1e9", "POST /search", 422, "top_k", json={"query": "red", "top_k": 10**9}),
    bad("top_k-boolean", "POST /search", 422, "not a boolean", json={"query": "red", "top_k": True}),
    bad("offset-boolean", "POST /search", 422, "not a boolean", json={"query": "red", "offset": False}),
    bad("offset-1e9", "POST /search", 422, "offset", json={"query": "red", "offset": 10**9}),
    bad("top_k-0-get", "GET /search?q=red&top_k=0", 422, "top_k"),
    bad("top_k-negative-get", "GET /search?q=red&top_k=-1", 422, "top_k"),
    bad("top_k-1e9-get", "GET /search?q=red&top_k=1000000000", 422, "top_k"),
    bad("top_k-string-get", "GET /search?q=red&top_k=ten", 422, "top_k"),
    bad("top_k-0-image", "POST /search/image", 422, "top_k", files=AN_IMAGE, data={"top_k": "0"}),
    bad("top_k-negative-image", "POST /search/image", 422, "top_k", files=AN_IMAGE, data={"top_k": "-1"}),
    bad("top_k-1e9-image", "POST /search/image", 422, "top_k", files=AN_IMAGE, data={"top_k": str(10**9)}),
    bad("top_k-string-image", "POST /search/image", 422, "top_k", files=AN_IMAGE, data={"top_k": "ten"}),
    # uploads that are not (whole) images; text, PDF, 0 bytes and truncated PNG/JPEG are in test_api
    bad("zip-image", "POST /search/image", 415, "not an image", files=A_ZIP),
    bad("zip-describe", "POST /describe", 415, "not an image", files=A_ZIP),
    bad("bomb-describe", "POST /describe", 400, "pixels", files=A_BOMB),
    bad("truncated-gif", "POST /search/image", 400, "image", files=A_CUT_GIF),
    bad("extra-field-describe", "POST /describe", 422, "unknown multipart", files=AN_IMAGE, data={"k": "1"}),
    bad(
        "two-files-describe", "POST /describe", 400, "Too many files", files=[("image", PNG), ("image", PNG)]
    ),
    # ids
    bad("id-absolute-describe", "POST /describe", 404, "no image", json={"image_id": "/etc/passwd"}),
    bad("id-encoded-dots-describe", "POST /describe", 404, "no image", json={"image_id": "%2e%2e%2f%2e%2e"}),
    bad("id-nul-describe", "POST /describe", 404, "no image", json={"image_id": "0123456\x00789abcdef"}),
    bad("id-10kb-describe", "POST /describe", 422, "at most 64", json={"image_id": "a" * 10_000}),
    bad("id-dots-thumbnail", "GET /images/..%2F..%2Fetc%2Fpasswd/thumbnail", 404, "Not Found"),
    bad("id-encoded-dots-thumbnail", "GET /images/%2e%2e/thumbnail", 404, "no image"),
    bad("id-absolute-thumbnail", "GET /images/%2Fetc%2Fpasswd/thumbnail", 404, "Not Found"),
    bad("id-nul-thumbnail", "GET /images/%00/thumbnail", 404, "no image"),
    bad("id-10kb-thumbnail", "GET /images/" + "a" * 10_000 + "/thumbnail", 422, "at most 64"),
    # content types
    bad("search-as-text", "POST /search", 415, "application/json", content=b'{"query": "r"}', headers=TEXT),
    bad("search-no-content-type", "POST /search", 415, "'none'", content=b'{"query": "red"}'),
    bad("search-as-form", "POST /search", 415, "application/json", data={"query": "red"}),
    bad("search-as-multipart", "POST /search", 415, "application/json", files=AN_IMAGE),
    bad("image-as-json", "POST /search/image", 415, "multipart/form-data", json={"image": "red.png"}),
    bad("image-as-raw-png", "POST /search/image", 415, "multipart/form-data", content=PNG, headers=RAW_PNG),
    bad("image-no-boundary", "POST /search/image", 400, "boundary", content=PNG, headers=NO_BOUNDARY),
    bad("describe-as-raw-png", "POST /describe", 415, "content type", content=PNG, headers=RAW_PNG),
    bad("describe-as-form", "POST /describe", 415, "content type", data={"query": "red"}),
    # JSON that is not an object, or not JSON
    bad("search-json-string", "POST /search", 422, "dictionary", content=b'"a red thing"', headers=JSON),
    bad("search-json-number", "POST /search", 422, "dictionary", content=b"42", headers=JSON),
    bad("search-json-null", "POST /search", 422, "dictionary", content=b"null", headers=JSON),
    bad(
        "search-json-trailing",
        "POST /search",
        422,
        "not valid JSON",
        content=b'{"query": "r"} x',
        headers=JSON,
    ),
    bad("search-json-deep", "POST /search", 400, "parsing the body", content=DEEP, headers=JSON),
    bad("describe-json-string", "POST /describe", 422, "invalid request", content=b'"a thing"', headers=JSON),
    bad("describe-json-number", "POST /describe", 422, "invalid request", content=b"42", headers=JSON),
    bad("describe-json-null", "POST /describe", 422, "invalid request", content=b"null", headers=JSON),
    bad("describe-json-deep", "POST /describe", 422, "nested too deeply", content=DEEP, headers=JSON),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "fragment"), BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_the_service_stays_healthy(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    assert_clear_4xx(client.request(method, path, **kwargs), status, fragment)
    assert_healthy(client)


def test_non_blank_pattern_in_the_schema_is_the_services_rule() -> None:
    pattern = re.compile(NON_BLANK)
    assert all(
        bool(pattern.fullmatch(chr(code))) != chr(code).isspace() for code in range(sys.maxunicode + 1)
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/search?q=red&offset=10000", {}),
        ("POST", "/search", {"json": {"query": "red", "top_k": 100, "offset": 3}}),
        ("POST", "/search/image", {"files": upload(PNG), "data": {"offset": "3"}}),
    ],
)
def test_offset_past_the_end_is_an_empty_page(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["total"] == 3


@pytest.mark.parametrize(
    ("name", "data", "colour"),
    [
        ("animated.gif", animated_gif(), "red"),  # the first frame counts
        ("cmyk.jpg", encoded(Image.new("CMYK", (24, 24), (0, 230, 230, 0)), "JPEG"), "red"),
        ("deep.png", png16(rgb=True), "red"),
        ("grey16.png", png16(rgb=False), None),
        ("palette.png", encoded(Image.new("RGB", (24, 24), COLOURS["green"]).convert("P"), "PNG"), "green"),
    ],
)
def test_unusual_but_valid_images_are_searched_and_described(
    client: TestClient, name: str, data: bytes, colour: str | None
) -> None:
    found = client.post("/search/image", files=upload(data, name), data={"top_k": "1"})
    assert found.status_code == 200, found.text
    described = client.post("/describe", files=upload(data, name))
    assert described.status_code == 200, described.text
    if colour is not None:
        assert colour in found.json()["results"][0]["source"]
        assert described.json()["labels"][0]["label"] == f"{colour} thing"


def test_upload_above_the_default_limit_is_413(index_dir: Path, models: Models, tmp_path: Path) -> None:
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path, device="cpu")  # default: 20 MB
    big = b"\xff\xd8\xff" + os.urandom(25 * 1024 * 1024)
    with client_for(settings, models) as client:
        wait_ready(client)
        for path in ("/search/image", "/describe"):
            assert_clear_4xx(
                client.post(path, files=upload(big, "big.jpg", "image/jpeg")), 413, "limit of 20"
            )
        assert_healthy(client)


# -- 6. access and uploads -------------------------------------------------------------------------


def chunks(total_mb: int, sent: list[int] | None = None) -> Iterator[bytes]:
    """A multipart body of about `total_mb` MB streamed in 1 MB pieces; counts the pieces taken."""
    yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n\xff\xd8'
    for _ in range(total_mb):
        if sent is not None:
            sent.append(1)
        yield b"\x00" * (1024 * 1024)
    yield b"\r\n--b--\r\n"


@pytest.mark.parametrize("path", ["/search/image", "/describe"])
def test_chunked_upload_without_length_above_the_limit_is_413(client: TestClient, path: str) -> None:
    response = client.post(
        path, content=chunks(3), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert "content-length" not in response.request.headers
    assert_clear_4xx(response, 413, "limit")
    assert_healthy(client)


def test_streamed_body_is_refused_before_it_is_all_read(client: TestClient) -> None:
    sent: list[int] = []
    body = chunks(50, sent)
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        piece = next(body, None)
        return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/search/image",
        "raw_path": b"/search/image",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=b"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    assert messages[0]["status"] == 413
    assert len(sent) <= 3  # limit 1 MB (+64 KB): the other ~47 MB were never read


def open_files() -> list[str]:
    """What this process's file descriptors point at."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return targets


def test_uploads_leave_no_files_and_no_open_handles(
    index_dir: Path, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where uploads above 1 MB are spooled
    settings = Settings(index_dir=index_dir, max_upload_mb=5, cache_dir=tmp_path / "cache", device="cpu")
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    big_image = encoded(Image.fromarray(noise), "PNG")
    assert len(big_image) > 2 * 1024 * 1024  # spooled to disk, not kept in memory
    with client_for(settings, models) as client:
        wait_ready(client)
        for path in ("/search/image", "/describe"):
            assert client.post(path, files=upload(big_image, "big.png", "image/png")).status_code == 200
            assert client.post(path, files=upload(os.urandom(3 * 1024 * 1024))).status_code == 415
            assert client.post(path, files=upload(b"\x00" * (6 * 1024 * 1024))).status_code == 413
        assert_healthy(client)
    assert list(spool.iterdir()) == []
    assert not [target for target in open_files() if target.startswith(str(spool))]


def test_image_responses_forbid_content_sniffing(client: TestClient) -> None:
    ids = [r["id"] for r in client.post("/search", json={"query": "thing"}).json()["results"]]
    for path in (f"/images/{ids[0]}", f"/images/{ids[0]}/thumbnail"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
        again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.headers["x-content-type-options"] == "nosniff"


def test_cors_is_off_by_default(client: TestClient) -> None:
    simple = client.get("/healthz", headers={"Origin": "https://any.example"})
    assert "access-control-allow-origin" not in simple.headers
    preflight = client.options(
        "/search", headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_preflight_allows_only_configured_origins(
    index_dir: Path, models: Models, tmp_path: Path
) -> None:
    settings = Settings(
        index_dir=index_dir, cors_origins="https://ok.example", cache_dir=tmp_path, device="cpu"
    )
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with client_for(settings, models) as client:
        wait_ready(client)
        allowed = client.options("/search", headers={"Origin": "https://ok.example", **ask})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
        denied = client.options("/search", headers={"Origin": "https://evil.example", **ask})
        assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
        admin = client.options(
            "/admin/reload",
            headers={"Origin": "https://ok.example", **ask, "Access-Control-Request-Headers": "x-api-key"},
        )
        assert admin.status_code == 400  # browsers may not send the admin key cross-origin


def test_admin_is_disabled_without_a_configured_key(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "guess"}):
        assert_clear_4xx(client.post("/admin/reload", headers=headers), 403, "disabled")
    assert_healthy(client)


def test_blank_key_setting_leaves_admin_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_API_KEY", "  ")
    assert Settings().api_key is None
    monkeypatch.setenv("IMGSEARCH_API_KEY", KEY)
    settings = Settings()
    assert settings.api_key is not None and KEY not in repr(settings)


# -- 5. live reload --------------------------------------------------------------------------------


@pytest.fixture
def live(pipeline: Pipeline, models: Models, tmp_path: Path) -> Iterator[tuple[TestClient, Path, Path]]:
    """A client with an admin key over an index of its own: (client, gallery, index dir)."""
    gallery = make_gallery(tmp_path / "gallery")
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu", api_key=KEY)
    with client_for(settings, models) as client:
        wait_ready(client)
        client.app.state.runtime.follow_every = None  # type: ignore[attr-defined]  # these test /admin/reload
        yield client, gallery, target


def admin(client: TestClient, key: str | bytes | None = KEY) -> Reply:
    """POST /admin/reload with a key (bytes: sent as they are)."""
    if key is None:
        return client.post("/admin/reload")
    return client.post("/admin/reload", headers={b"X-API-Key": key.encode() if isinstance(key, str) else key})


def test_admin_needs_the_right_key(live: tuple[TestClient, Path, Path]) -> None:
    client = live[0]
    assert_clear_4xx(admin(client, None), 401, "X-API-Key")
    assert_clear_4xx(admin(client, "wrong"), 401, "X-API-Key")
    assert_clear_4xx(admin(client, KEY + "x"), 401, "X-API-Key")
    assert_clear_4xx(admin(client, "ключ".encode()), 401, "X-API-Key")  # non-ASCII: no 500
    assert admin(client).status_code == 200


def test_reload_serves_the_new_index_and_keeps_the_models(
    live: tuple[TestClient, Path, Path], pipeline: Pipeline, models: Models
) -> None:
    client, gallery, target = live
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    (gallery / "red.png").unlink()
    (gallery / "yellow.png").write_bytes(png_bytes(YELLOW))
    (gallery / "more").mkdir()
    (gallery / "more" / "red2.png").write_bytes(png_bytes((200, 10, 10), (30, 30)))
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    before = client.post("/search", json={"query": "red thing", "top_k": 1}).json()["results"][0]
    assert before["source"] == "red.png"  # still the index loaded at start-up
    reloaded = admin(client)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["status"] == "reloaded"
    assert (reloaded.json()["images"], reloaded.json()["previous_images"]) == (4, 3)
    assert client.get("/readyz").json()["images"] == 4
    after = client.post("/search", json={"query": "red thing", "top_k": 1}).json()["results"][0]
    assert after["source"] == "more/red2.png"
    assert client.get(after["thumbnail_url"]).status_code == 200
    assert runtime.service.pipeline.models is models  # not reloaded


def test_requests_in_flight_finish_on_the_previous_index(
    live: tuple[TestClient, Path, Path], pipeline: Pipeline
) -> None:
    client, gallery, target = live
    old: SearchService = client.app.state.runtime.service  # type: ignore[attr-defined]
    entered, release = threading.Event(), threading.Event()
    search = old.search

    def held(*args: Any, **kwargs: Any) -> Any:
        """The search, held until the test releases it."""
        entered.set()
        assert release.wait(30)
        return search(*args, **kwargs)

    old.search = held  # type: ignore[method-assign]
    (gallery / "red.png").unlink()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/search", json={"query": "red thing", "top_k": 5})
        assert entered.wait(30)
        build_index(
            FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
        )
        assert admin(client).json()["images"] == 2
        assert client.post("/search", json={"query": "red thing"}).json()["total"] == 2
        release.set()
        in_flight = pending.result()
    assert in_flight.status_code == 200, in_flight.text
    body = in_flight.json()
    assert body["total"] == 3 and body["results"][0]["source"] == "red.png"


class Searcher:
    """A client that searches and fetches every result's thumbnail and original until stopped."""

    def __init__(self, client: TestClient, gone: str) -> None:
        self.client, self.gone = client, gone
        self.rounds, self.errors, self.requests = 0, list[str](), 0
        self.stop = threading.Event()

    def run(self) -> None:
        """Search, then fetch what each result names; the deleted photo's original may be gone."""
        while not self.stop.is_set():
            found = self.client.post("/search", json={"query": "red thing", "top_k": 10})
            self.requests += 1
            if found.status_code != 200:
                self.errors.append(f"search {found.status_code} {found.text}")
                continue
            for result in found.json()["results"]:
                for url in (result["thumbnail_url"], result["url"]):
                    got = self.client.get(url)
                    self.requests += 1
                    deleted_original = url == result["url"] and result["source"] == self.gone
                    if got.status_code != 200 and not (deleted_original and got.status_code == 404):
                        self.errors.append(f"{url} ({result['source']}): {got.status_code} {got.text}")
            self.rounds += 1

    def wait_rounds(self, more: int) -> None:
        """Block until this client finished `more` further rounds."""
        target, deadline = self.rounds + more, time.monotonic() + 60
        while self.rounds < target:
            assert time.monotonic() < deadline and not self.stop.is_set()
            time.sleep(0.01)


def test_a_rebuild_under_load_is_served_whole_without_a_reload(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    first = live_path(target).name
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu")
    with client_for(settings, models) as client, ThreadPoolExecutor(4) as pool:
        wait_ready(client)
        assert client.get("/readyz").json()["generation"] == first
        searchers = [Searcher(client, "red.png") for _ in range(4)]
        running = [pool.submit(searcher.run) for searcher in searchers]
        try:
            for searcher in searchers:
                searcher.wait_rounds(1)
            shown = client.post("/search", json={"query": "red thing", "top_k": 1}).json()["results"][0]
            assert shown["source"] == "red.png"
            (gallery / "red.png").unlink()
            (gallery / "more").mkdir()
            (gallery / "more" / "red2.png").write_bytes(png_bytes((200, 10, 10), (30, 30)))
            report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
            assert (report.reused, report.encoded, report.removed) == (2, 1, 1)
            second = live_path(target).name
            assert second != first and (target / "generations" / first).is_dir()  # still being read
            deadline = time.monotonic() + 30
            while client.get("/readyz").json()["generation"] != second:  # no /admin/reload call
                assert time.monotonic() < deadline
                time.sleep(0.02)
            for searcher in searchers:
                searcher.wait_rounds(3)
            # A result sent before the switch still shows: its thumbnail is read from its generation.
            assert client.get(shown["thumbnail_url"]).status_code == 200
        finally:
            for searcher in searchers:
                searcher.stop.set()
        for done in running:
            done.result()
        assert [e for searcher in searchers for e in searcher.errors] == []
        assert sum(searcher.requests for searcher in searchers) > 50
        ready = client.get("/readyz").json()
        assert (ready["generation"], ready["images"]) == (second, 3)
        results = client.post("/search", json={"query": "red thing", "top_k": 10}).json()["results"]
        assert results[0]["source"] == "more/red2.png"
        assert "red.png" not in {result["source"] for result in results}


def test_a_generation_that_does_not_fit_the_models_is_refused_and_the_old_one_served(
    pipeline: Pipeline, models: Models, gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    first = live_path(target).name
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu")
    with client_for(settings, models) as client:
        wait_ready(client)
        client.app.state.runtime.follow_every = 0.0  # type: ignore[attr-defined]
        other = fake_models(text_dim=32)
        other_pipeline = Pipeline(other, make_bridge(other, BridgeParams(), tmp_path / "other"), flip=True)
        build_index(
            FolderSource(gallery), target, other_pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
        )
        deadline = time.monotonic() + 30
        while not any("reload refused" in r.getMessage() for r in caplog.records):
            assert client.get("/readyz").json()["generation"] == first and time.monotonic() < deadline
            time.sleep(0.02)
        for _ in range(20):
            assert client.post("/search", json={"query": "red thing"}).json()["total"] == 3
        ready = client.get("/readyz").json()
        assert (ready["status"], ready["generation"]) == ("ready", first)
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refused) == 1 and "does not match the loaded models" in refused[0]


def test_originals_stored_in_a_generation_outlive_the_switch(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    from datasets import Dataset, Image as ImageFeature

    def source(names: list[str]) -> HFDatasetSource:
        """A dataset of one-colour pictures."""
        pictures = [Image.new("RGB", (20, 10), COLOURS[name]) for name in names]
        data = Dataset.from_dict({"image": pictures}).cast_column("image", ImageFeature())
        return HFDatasetSource(data, "image", name="memory")

    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(source(["red", "green"]), target, pipeline, config, progress=False)
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu")
    with client_for(settings, models) as client:
        wait_ready(client)
        client.app.state.runtime.follow_every = 0.0  # type: ignore[attr-defined]
        red = client.post("/search", json={"query": "red thing", "top_k": 1}).json()["results"][0]
        build_index(source(["green", "blue"]), target, pipeline, config, progress=False, update=True)
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["generation"] != live_path(target).name:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert red["id"] not in {
            r["id"] for r in client.post("/search", json={"query": "red"}).json()["results"]
        }
        original = client.get(red["url"])  # the row is gone from the dataset; its generation still has it
        assert original.status_code == 200, original.text
        with Image.open(io.BytesIO(original.content)) as picture:
            assert picture.getpixel((0, 0)) == COLOURS["red"]
        assert client.get(red["thumbnail_url"]).status_code == 200


def test_a_generation_is_removed_only_once_no_reader_holds_it(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    reader = Index(target)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert reader.generation in generations(target) and len(generations(target)) == 2
    assert reader.thumbnail_path(reader.records([0])[0]).is_file()  # still readable
    reader.close()
    build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert generations(target) == [live_path(target).name] and reader.generation not in generations(target)


def test_reload_of_a_mismatched_index_is_refused_naming_both(
    live: tuple[TestClient, Path, Path], tmp_path: Path
) -> None:
    client, gallery, target = live
    other = fake_models(text_dim=32)
    other_pipeline = Pipeline(other, make_bridge(other, BridgeParams(), tmp_path / "other"), flip=True)
    build_index(
        FolderSource(gallery), target, other_pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    refused = admin(client)
    assert_clear_4xx(refused, 409, "does not match the loaded models")
    assert "index 32, service 64" in refused.json()["detail"]
    assert "still serving the previous index" in refused.json()["detail"]
    assert client.get("/readyz").json()["status"] == "ready"
    assert_healthy(client)


def test_reload_of_a_missing_or_partial_index_is_refused(live: tuple[TestClient, Path, Path]) -> None:
    client, _, target = live
    (live_path(target) / "vectors.npy").rename(target.with_name("vectors.npy"))
    assert_clear_4xx(admin(client), 409, "incomplete")
    shutil.rmtree(target)
    assert_clear_4xx(admin(client), 409, "no index at")
    assert_healthy(client)


def test_reload_before_warm_up_is_503(settings: Settings, models: Models, tmp_path: Path) -> None:
    release = threading.Event()

    keyed = Settings(index_dir=settings.index_dir, cache_dir=tmp_path, device="cpu", api_key=KEY)
    with TestClient(create_app(keyed, factory=gated_factory(models, tmp_path, release))) as client:
        assert_clear_4xx(admin(client), 503, "warming up")
        release.set()
        wait_ready(client)


# -- 7. start-up checks ----------------------------------------------------------------------------


def _missing(index_dir: Path, path: Path) -> None:
    """No index at all."""


def _partial(index_dir: Path, path: Path) -> None:
    """An index without its vectors."""
    shutil.copytree(live_path(index_dir), path)
    (path / "vectors.npy").unlink()


@pytest.mark.parametrize(
    ("make", "text_dim", "fragment"),
    [
        (_missing, 64, "no index at"),
        (_partial, 64, "incomplete or unreadable"),
        (shutil.copytree, 32, "does not match the loaded models"),
    ],
    ids=["missing", "partial", "mismatched"],
)
def test_start_up_failure_is_one_log_line_and_503_with_the_reason(
    index_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make: Any,
    text_dim: int,
    fragment: str,
) -> None:
    path = tmp_path / "index"
    make(index_dir, path)
    caplog.set_level(logging.INFO, logger="app.api.runtime")
    settings = Settings(index_dir=path, cache_dir=tmp_path / "cache", device="cpu")
    with client_for(settings, fake_models(text_dim)) as client:
        assert not client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert fragment in ready.json()["detail"]
        search = client.post("/search", json={"query": "red"})
        assert search.status_code == 503 and fragment in search.json()["detail"]
        assert client.get("/healthz").status_code == 200
    errors = [r for r in caplog.records if r.name == "app.api.runtime" and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
    assert fragment in errors[0].getMessage()


def test_unexpected_start_up_error_is_one_line_too(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(s: Settings) -> SearchService:
        """Warm-up that fails unexpectedly."""
        raise KeyError("profile")

    caplog.set_level(logging.INFO, logger="app.api.runtime")
    with TestClient(create_app(settings, factory=broken)) as client:
        assert not client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        assert client.get("/readyz").json()["detail"] == "KeyError: 'profile'"
    errors = [r for r in caplog.records if r.name == "app.api.runtime" and r.levelno >= logging.ERROR]
    assert [(r.getMessage(), r.exc_info) for r in errors] == [("not ready: KeyError: 'profile'", None)]


# -- 4. crash-safe, locked, incremental builds -----------------------------------------------------


def coloured_folder(folder: Path, names: dict[str, tuple[int, int, int]]) -> Path:
    """PNG files of one colour each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in names.items():
        (folder / name).write_bytes(png_bytes(colour, (16, 12)))
    return folder


def random_colours(count: int, seed: int) -> dict[str, tuple[int, int, int]]:
    """`count` named random colours, none of them mostly green."""
    rng = np.random.default_rng(seed)
    colours: dict[str, tuple[int, int, int]] = {}
    for i in range(count):
        red, blue = (int(c) for c in rng.integers(0, 255, 2))
        colours[f"c{seed}-{i:02d}.png"] = (red, int(rng.integers(0, 100)), blue)
    return colours


def by_id(index: Index) -> dict[str, int]:
    """Row of each id."""
    return {record.id: record.row for record in index.records(list(range(index.count)))}


def generations(index_dir: Path) -> list[str]:
    """Names of the generations in an index folder."""
    return sorted(p.name for p in (index_dir / "generations").iterdir() if p.is_dir())


def hidden(folder: Path) -> list[str]:
    """Names of the dot-entries (temporary build directories) in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_update_reuses_unchanged_files_encodes_new_ones_and_drops_deleted(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    (gallery / "red.png").unlink()
    (gallery / "yellow.png").write_bytes(png_bytes(YELLOW))
    (gallery / "sub" / "blue-copy.webp").write_bytes((gallery / "sub" / "blue.webp").read_bytes())
    encoded_images: list[int] = []
    encode = pipeline.encode_pixels

    def counting(pixels: torch.Tensor, label_k: int = 5, project: bool = True) -> Encoded:
        """Encode, remembering how many images went through the model."""
        encoded_images.append(pixels.shape[0])
        return encode(pixels, label_k, project)

    monkeypatch.setattr(pipeline, "encode_pixels", counting)
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert sum(encoded_images) == 1  # only yellow.png went through the model
    assert (report.indexed, report.reused, report.encoded, report.removed) == (3, 2, 1, 1)
    assert report.duplicates == [{"source": "sub/blue.webp", "same_as": "sub/blue-copy.webp"}]
    updated = Index(target)
    assert updated.meta.build.update is True
    build_index(FolderSource(gallery), tmp_path / "full", pipeline, config, progress=False)
    full = Index(tmp_path / "full")
    rows_u, rows_f = by_id(updated), by_id(full)
    assert rows_u.keys() == rows_f.keys()
    for image_id in rows_u:
        u, f = rows_u[image_id], rows_f[image_id]
        for space in ("vectors", "features"):
            mine = np.asarray(getattr(updated, space)[u], np.float32)
            assert np.allclose(mine, np.asarray(getattr(full, space)[f], np.float32), atol=2e-3)
        assert updated.records([u])[0].labels == full.records([f])[0].labels
        thumbnail = Path("thumbnails") / f"{image_id}.jpg"
        assert (updated.path / thumbnail).read_bytes() == (full.path / thumbnail).read_bytes()


def test_update_with_pca_refits_on_old_and_new_vectors(pipeline: Pipeline, tmp_path: Path) -> None:
    gallery = coloured_folder(tmp_path / "gallery", {**random_colours(12, 1), "green.png": COLOURS["green"]})
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=4, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    assert np.load(live_path(target) / "text_vectors.npy").shape == (13, 64)
    coloured_folder(gallery, random_colours(3, 2))
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (13, 3)
    updated = Index(target)
    assert updated.dim == 4 and np.load(live_path(target) / "text_vectors.npy").shape == (16, 64)
    assert (
        service_over(updated, pipeline.models, None).search_text("green thing", 1)[0].record.source
        == "green.png"
    )
    build_index(FolderSource(gallery), tmp_path / "full", pipeline, config, progress=False)
    full = Index(tmp_path / "full")
    order = [by_id(full)[image_id] for image_id in by_id(updated)]
    # Components may flip sign between fits; the cosines between images must not change.
    u = np.asarray(updated.vectors, np.float32)
    f = np.asarray(full.vectors, np.float32)[order]
    assert np.allclose(u @ u.T, f @ f.T, atol=2e-2)


@pytest.mark.parametrize(
    ("config", "difference"),
    [
        (BuildConfig(pca_dim=0, workers=0, label_k=3), "label count: index 5, now 3"),
        (BuildConfig(pca_dim=2, workers=0), "pca dim: index 0, now 2"),
    ],
)
def test_update_of_an_index_built_differently_is_a_full_build(
    pipeline: Pipeline,
    gallery: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    config: BuildConfig,
    difference: str,
) -> None:
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    caplog.set_level(logging.INFO, logger="app.build")
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (0, 3)
    lines = [r.getMessage() for r in caplog.records if "built differently" in r.getMessage()]
    assert len(lines) == 1 and difference in lines[0] and "building all images" in lines[0]


def build_command(images: Path, index_dir: Path, cache: Path, *options: str) -> list[str]:
    """Command line of the fake-model build in tests/build_subprocess.py."""
    paths = ["--images", str(images), "--index-dir", str(index_dir), "--cache-dir", str(cache)]
    return [sys.executable, "-m", "tests.build_subprocess", *paths, *options]


def start_build(images: Path, index_dir: Path, cache: Path, *options: str) -> subprocess.Popen[str]:
    """That build in a child process, with pipes to talk to it, in a process group of its own (as a
    terminal's foreground job: a test may send it Ctrl-C)."""
    return subprocess.Popen(
        build_command(images, index_dir, cache, *options),
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_pause(build: subprocess.Popen[str]) -> None:
    """Read the child's output until it says it paused (no timing involved)."""
    assert build.stdout is not None
    for line in build.stdout:
        if line.strip() == "paused":
            return
    pytest.fail(f"build ended before pausing: {build.wait()} {build.stderr.read() if build.stderr else ''}")


def test_killed_build_leaves_the_index_whole_and_the_next_build_finishes(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    gallery = coloured_folder(
        tmp_path / "gallery", {"x-red.png": COLOURS["red"], "x-blue.png": COLOURS["blue"]}
    )
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    meta_before = (live_path(target) / "meta.json").read_text()
    coloured_folder(
        gallery, {"a-green.png": COLOURS["green"], "a-yellow.png": YELLOW, "b-grey.png": (90, 90, 90)}
    )
    build = start_build(gallery, target, tmp_path / "cache", "--update", "--pause-after", "1")
    try:
        wait_for_pause(build)  # half-way: one batch of new images encoded, nothing swapped yet
        assert len(generations(target)) == 2  # the served one and the one being written
        build.send_signal(signal.SIGKILL)
        assert build.wait() == -signal.SIGKILL
    finally:
        build.kill()
    assert (live_path(target) / "meta.json").read_text() == meta_before
    assert Index(target).count == 2
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.indexed, report.reused, report.encoded) == (5, 2, 3)
    assert Index(target).count == 5
    assert generations(target) == [live_path(target).name]  # the killed build's generation is gone
    assert hidden(tmp_path) == [] and hidden(target) == []


def test_a_second_build_of_the_same_index_is_refused_while_the_first_runs(
    gallery: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    first = start_build(gallery, target, tmp_path / "cache", "--pause-after", "1", "--batch-size", "1")
    try:
        wait_for_pause(first)
        second = subprocess.run(
            build_command(gallery, target, tmp_path / "cache"),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode == 1
        assert f"another build is writing {target.resolve()}" in second.stderr
        assert f"held by process {first.pid}" in second.stderr
        with pytest.raises(BuildLocked, match="wait for it to finish"):
            build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
        assert first.stdin is not None
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait() == 0
    finally:
        first.kill()
    assert Index(target).count == 3
    report = build_index(FolderSource(gallery), target, pipeline, BuildConfig(workers=0), progress=False)
    assert report.indexed == 3  # the lock was released with the first build


def test_leftovers_of_killed_builds_are_removed_and_nothing_else(
    pipeline: Pipeline, gallery: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    killed = target / "generations" / "20260101T000000Z-0123abcd"  # killed before it was finished
    (killed / "thumbnails").mkdir(parents=True)
    (target / "generations" / ".removing-20260101T000000Z-4567abcd").mkdir()  # killed while removing
    (target / ".current-4242").symlink_to("generations/20260101T000000Z-0123abcd")  # killed mid-switch
    (target / "generations" / "notes.txt").write_text("mine")
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (3, 0)
    assert generations(target) == [live_path(target).name]
    assert (target / "generations" / "notes.txt").read_text() == "mine"
    assert hidden(target) == [] and hidden(target / "generations") == []


def test_build_report_on_disk_counts_reuse(pipeline: Pipeline, gallery: Path, tmp_path: Path) -> None:
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    on_disk = json.loads((live_path(target) / "build_report.json").read_text())
    assert (on_disk["indexed"], on_disk["reused"], on_disk["encoded"], on_disk["removed"]) == (3, 3, 0, 0)


def test_a_file_deleted_between_lookup_and_response_is_a_404(
    pipeline: Pipeline, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    target = tmp_path / "index"
    build_index(FolderSource(gallery), target, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu")
    looked_up = Index.original_path

    def then_deleted(index: Index, record: Any) -> Path:
        path = looked_up(index, record)  # found by the lookup, as during a rebuild that removes it
        path.unlink()
        return path

    monkeypatch.setattr(Index, "original_path", then_deleted)
    with client_for(settings, models) as client:
        wait_ready(client)
        hit = client.post("/search", json={"query": "red thing", "top_k": 1}).json()["results"][0]
        response = client.get(hit["url"])
        assert response.status_code == 404, response.text
        assert response.json()["detail"] == "this image's file is no longer available"
