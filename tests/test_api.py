"""The HTTP API over a tiny index and fake models: normal answers and every error status."""

from __future__ import annotations

import io
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.responses import FileResponse

from app.main import create_app
from app.pipeline import Models
from app.settings import Settings
from tests.conftest import gated_factory, png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS


def ids_by_source(client: TestClient) -> dict[str, str]:
    """Map source path → id through the API itself."""
    body = client.post("/search", json={"query": "thing", "top_k": 10}).json()
    return {r["source"]: r["id"] for r in body["results"]}


def test_healthz_and_readyz_report_profile_device_and_size(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert (ready["profile"], ready["device"], ready["images"]) == ("fake", "cpu", 3)


def test_readyz_is_503_while_warming_then_200(settings: Settings, models: Models, tmp_path: Path) -> None:
    release = threading.Event()
    with TestClient(create_app(settings, factory=gated_factory(models, tmp_path, release))) as client:
        assert client.get("/healthz").status_code == 200
        warming = client.get("/readyz")
        assert warming.status_code == 503 and warming.json()["status"] == "loading"
        search = client.post("/search", json={"query": "red"})
        assert search.status_code == 503 and "warming up" in search.json()["detail"]
        release.set()
        wait_ready(client)


def test_missing_index_gives_503_with_reason(tmp_path: Path, models: Models) -> None:
    settings = Settings(index_dir=tmp_path / "nowhere", cache_dir=tmp_path)
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        client.app.state.runtime.wait(10)  # type: ignore[attr-defined]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed" and "no index at" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_search_ranks_the_matching_colour_first(client: TestClient, colour: str) -> None:
    response = client.post("/search", json={"query": f"a {colour} thing", "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == f"a {colour} thing" and body["total"] == 3 and body["took_ms"] >= 0
    first = body["results"][0]
    assert colour in first["source"]
    assert (
        first["url"] == f"/images/{first['id']}"
        and first["thumbnail_url"] == f"/images/{first['id']}/thumbnail"
    )
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {"id", "score", "source", "width", "height", "url", "thumbnail_url"} <= set(first)


def test_search_get_and_paging(client: TestClient) -> None:
    full = client.get("/search", params={"q": "red thing", "top_k": 3}).json()["results"]
    page = client.get("/search", params={"q": "red thing", "top_k": 1, "offset": 1}).json()["results"]
    assert [r["id"] for r in page] == [full[1]["id"]]
    past_end = client.post("/search", json={"query": "red", "top_k": 5, "offset": 50})
    assert past_end.status_code == 200 and past_end.json()["results"] == []


def test_search_reports_width_and_height_of_the_original(client: TestClient) -> None:
    results = client.post("/search", json={"query": "green thing", "top_k": 1}).json()["results"]
    assert (results[0]["width"], results[0]["height"]) == (300, 400)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"query": "red", "top_k": 0}, "top_k"),
        ({"query": "red", "top_k": 101}, "top_k"),
        ({"query": "red", "top_k": "ten"}, "top_k"),
        ({"query": "red", "offset": -1}, "offset"),
        ({"query": ""}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"top_k": 3}, "query"),
        ({"query": "red", "colour": "x"}, "colour"),
        (["red"], "invalid request"),
    ],
)
def test_search_rejects_invalid_bodies_with_422(client: TestClient, body: object, fragment: str) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["detail"]


def test_search_rejects_whitespace_and_non_utf8(client: TestClient) -> None:
    blank = client.post("/search", json={"query": "   \n\t "})
    assert blank.status_code == 422 and "non-space" in blank.json()["detail"]
    raw = client.post(
        "/search", content=b'{"query": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert raw.status_code == 400 and "parsing the body" in raw.json()["detail"]


def test_queries_longer_than_the_configured_limit_are_422_with_the_limit(
    settings: Settings, models: Models, tmp_path: Path
) -> None:
    limited = settings.model_copy(update={"max_query_chars": 12})
    with TestClient(create_app(limited, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        long, short = "a red car on a road", "a red car"
        refused = [
            client.post("/search", json={"query": long}),
            client.get("/search", params={"q": long}),
            client.post("/describe", json={"query": long}),
        ]
        for response in refused:
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert (
                "19 characters" in detail and "at most 12" in detail and "IMGSEARCH_MAX_QUERY_CHARS" in detail
            )
        assert client.post("/search", json={"query": short}).status_code == 200
        assert client.get("/search", params={"q": short}).status_code == 200
        assert client.post("/describe", json={"query": short}).status_code == 200


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_an_invalid_query_limit_fails_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("IMGSEARCH_MAX_QUERY_CHARS", value)
    with pytest.raises(ValueError, match="max_query_chars"):
        Settings()


def test_search_by_image_finds_the_same_colour(client: TestClient) -> None:
    upload = png_bytes(COLOURS["blue"], (20, 20))
    response = client.post(
        "/search/image", files={"image": ("q.png", upload, "image/png")}, data={"top_k": "2"}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2 and "blue" in results[0]["source"]


def bomb_png() -> bytes:
    """A valid 30000×30000 one-bit PNG of a few kilobytes: a decompression bomb."""
    width = height = 30000
    header = b"\x89PNG\r\n\x1a\n"

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    raw = zlib.compress((b"\x00" + b"\x00" * (width // 8)) * height, 9)
    return header + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        (b"hello, I am text", 415, "not an image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "not an image"),
        (b"", 415, "empty"),
        (png_bytes((1, 2, 3))[:60], 400, "image"),
        (png_bytes((1, 2, 3), fmt="JPEG")[:200], 400, "image"),
    ],
)
def test_bad_uploads_get_clear_4xx(client: TestClient, payload: bytes, status: int, fragment: str) -> None:
    for path in ("/search/image", "/describe"):
        response = client.post(path, files={"image": ("x.bin", payload, "application/octet-stream")})
        assert response.status_code == status, (path, response.text)
        assert fragment in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_decompression_bomb_is_400(client: TestClient) -> None:
    response = client.post("/search/image", files={"image": ("bomb.png", bomb_png(), "image/png")})
    assert response.status_code == 400
    assert "pixels" in response.json()["detail"] or "too large" in response.json()["detail"]


def test_upload_above_limit_is_413(client: TestClient) -> None:
    big = b"\xff\xd8" + b"\x00" * (2 * 1024 * 1024)
    for path in ("/search/image", "/describe"):
        response = client.post(path, files={"image": ("big.jpg", big, "image/jpeg")})
        assert response.status_code == 413
        assert "limit" in response.json()["detail"]


def test_missing_upload_field_is_422(client: TestClient) -> None:
    response = client.post("/search/image", files={"picture": ("q.png", png_bytes((0, 0, 0)), "image/png")})
    assert response.status_code == 422 and "image" in response.json()["detail"]


def test_describe_upload_returns_sentence_and_labels(client: TestClient) -> None:
    response = client.post("/describe", files={"image": ("r.png", png_bytes(COLOURS["red"]), "image/png")})
    assert response.status_code == 200
    body = response.json()
    # a flat red picture: drawn, mostly red; the fake LM's invented continuation is not evidence
    assert body["description"] == "A mostly red drawing of a red thing."
    assert body["labels"][0]["label"] == "red thing" and 0 < body["labels"][0]["score"] <= 1
    assert body["confidence"] == pytest.approx(body["labels"][0]["score"], abs=1e-3)
    assert [(e["phrase"], e["source"]) for e in body["evidence"]] == [
        ("mostly red", "pixels"),
        ("drawing", "pixels"),
        ("red thing", "label"),
    ]
    assert body["evidence"][2] == {
        "phrase": "red thing",
        "source": "label",
        "labels": ["red thing"],
        "probability": body["confidence"],
    }
    assert body["generated"] is False


def test_describe_indexed_image_and_text_mode(client: TestClient) -> None:
    green = ids_by_source(client)["sub/green.jpg"]
    by_id = client.post("/describe", json={"image_id": green})
    assert by_id.status_code == 200 and by_id.json()["description"].endswith("of a green thing.")
    text = client.post("/describe", json={"query": "a red car"})
    assert text.status_code == 200 and text.json()["description"] == "A red car on a white background."
    assert text.json()["generated"] is True and text.json()["confidence"] is None


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"json": {"image_id": "0123456789abcdef"}}, 404, "no image"),
        ({"json": {"image_id": "../../etc/passwd"}}, 404, "no image"),
        ({"json": {}}, 422, "exactly one"),
        ({"json": {"image_id": "0123456789abcdef", "query": "x"}}, 422, "exactly one"),
        ({"json": {"query": "   "}}, 422, "non-space"),
        ({"json": ["a list"]}, 422, "invalid request"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"query=cat", "headers": {"content-type": "text/plain"}}, 415, "content type"),
        ({"files": {"picture": ("a.png", b"x", "image/png")}}, 422, "image"),
    ],
)
def test_describe_errors(client: TestClient, kwargs: dict[str, Any], status: int, fragment: str) -> None:
    response = client.post("/describe", **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]


def test_original_image_bytes_type_and_caching(client: TestClient, gallery: Path) -> None:
    red = ids_by_source(client)["red.png"]
    response = client.get(f"/images/{red}")
    assert response.status_code == 200
    assert response.content == (gallery / "red.png").read_bytes()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "max-age" in response.headers["cache-control"]
    etag = response.headers["etag"]
    again = client.get(f"/images/{red}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_an_original_deleted_while_it_is_being_sent_arrives_whole_and_ranges_still_work(
    client: TestClient, gallery: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    red = ids_by_source(client)["red.png"]
    original = (gallery / "red.png").read_bytes()
    part = client.get(f"/images/{red}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == original[:10]
    send, away = FileResponse.__call__, gallery.parent / "red.png.away"  # the gallery is the session's

    async def deleted_first(self: FileResponse, scope: Any, receive: Any, send_message: Any) -> None:
        Path(self.path).rename(away)  # the user deletes the photo after the route found it, before it is sent
        await send(self, scope, receive, send_message)

    monkeypatch.setattr(FileResponse, "__call__", deleted_first)
    try:
        response = client.get(f"/images/{red}")
        assert response.status_code == 200 and response.content == original
        monkeypatch.undo()
        gone = client.get(f"/images/{red}")
        assert gone.status_code == 404 and gone.json()["detail"].endswith("is no longer available")
    finally:
        if away.exists():
            away.rename(gallery / "red.png")  # as it was, time and all, for the other tests


def test_thumbnail_is_small_jpeg_with_etag(client: TestClient) -> None:
    green = ids_by_source(client)["sub/green.jpg"]
    response = client.get(f"/images/{green}/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and max(image.size) <= 256 and image.size == (192, 256)
    assert (
        client.get(
            f"/images/{green}/thumbnail", headers={"If-None-Match": response.headers["etag"]}
        ).status_code
        == 304
    )


@pytest.mark.parametrize(
    "path",
    [
        "/images/0123456789abcdef",
        "/images/..%2F..%2Fetc%2Fpasswd",
        "/images/%2e%2e",
        "/images/%2Fetc%2Fpasswd",
        "/images/abc%00def",
        "/images/" + "a" * 10_000,
        "/images/0123456789abcdef/thumbnail",
    ],
)
def test_unknown_or_hostile_ids_never_reach_files(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in {404, 422}
    assert "root:" not in response.text and response.headers["content-type"] == "application/json"


def test_metrics_count_requests_per_route_and_model_time(client: TestClient) -> None:
    client.post("/search", json={"query": "red"})
    text = client.get("/metrics").text
    assert 'imgsearch_http_requests_total{method="POST",route="/search",status="200"}' in text
    assert "imgsearch_http_request_seconds_bucket" in text
    assert 'imgsearch_model_inference_seconds_total{role="text"}' in text


def test_concurrent_requests_all_succeed(client: TestClient) -> None:
    def one(i: int) -> int:
        colour = ["red", "green", "blue"][i % 3]
        if i % 2:
            return client.post("/search", json={"query": f"{colour} thing {i}"}).status_code
        files = {"image": ("q.png", png_bytes(COLOURS[colour]), "image/png")}
        return client.post("/search/image", files=files).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(48))) == {200}


def test_cors_allows_only_configured_origins(index_dir: Path, models: Models, tmp_path: Path) -> None:
    settings = Settings(index_dir=index_dir, cors_origins=["https://ok.example"], cache_dir=tmp_path)
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        wait_ready(client)
        allowed = client.get("/healthz", headers={"Origin": "https://ok.example"})
        denied = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert allowed.headers.get("access-control-allow-origin") == "https://ok.example"
        assert "access-control-allow-origin" not in denied.headers
