"""What error answers say: a bad request is its 4xx at any time (also while models load), and the path
redactor hides server paths but never the service's own URL paths."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.errors import SERVER_PATH, public_detail
from app.errors import IndexUnavailable
from app.main import create_app
from app.pipeline import Models
from app.service import SearchService
from app.settings import Settings
from tests.conftest import bomb_header, gated_factory, png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS, FakeLanguageModel

LOADING = "the language model is still loading; /describe answers once it has"


@pytest.fixture
def lm_loading(settings: Settings, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client whose language model never finishes loading (search works, /describe waits)."""
    waiting = Models(models.profile, models.image, models.text, FakeLanguageModel())  # never loaded
    app = create_app(settings, factory=service_factory(waiting, tmp_path / "cache"))
    with TestClient(app) as client:
        wait_ready(client)
        assert client.get("/readyz").json()["describe"] == "loading"
        yield client


def indexed_id(client: TestClient) -> str:
    """The id of some indexed image."""
    return str(client.post("/search", json={"query": "red thing"}).json()["results"][0]["id"])


def test_a_valid_describe_waits_for_the_language_model_and_names_the_route(lm_loading: TestClient) -> None:
    for body in ({"image_id": indexed_id(lm_loading)}, {"query": "a red car"}):
        response = lm_loading.post("/describe", json=body)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json() == {"detail": LOADING, "error": "ModelLoading"}
    upload = {"image": ("red.png", png_bytes(COLOURS["red"]), "image/png")}
    response = lm_loading.post("/describe", files=upload)
    assert response.status_code == 503 and response.json()["detail"] == LOADING


UPLOADS: dict[str, tuple[bytes, int]] = {
    "not an image": (b"PK\x03\x04 an archive, not a picture" * 10, 415),
    "truncated": (png_bytes(COLOURS["red"], (300, 200), "JPEG")[:400], 400),
    "decompression bomb": (bomb_header(30_000, 30_000), 400),
    "too large": (b"\xff\xd8" + b"\x00" * (2 * 1024 * 1024), 413),
}
BODIES: dict[str, tuple[dict[str, Any], int]] = {
    "bad JSON": ({"content": b'{"image_id": ', "headers": {"content-type": "application/json"}}, 422),
    "unknown id": ({"json": {"image_id": "0123456789abcdef"}}, 404),
    "both fields": ({"json": {"image_id": "x", "query": "y"}}, 422),
    "unknown field": ({"json": {"image": "x"}}, 422),
    "blank query": ({"json": {"query": "   "}}, 422),
    "text body": ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
}


@pytest.mark.parametrize("case", sorted(UPLOADS))
def test_a_bad_upload_is_its_4xx_while_the_language_model_loads(lm_loading: TestClient, case: str) -> None:
    data, status = UPLOADS[case]
    response = lm_loading.post("/describe", files={"image": ("x.png", data, "image/png")})
    assert response.status_code == status, response.text
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("case", sorted(BODIES))
def test_a_bad_body_is_its_4xx_while_the_language_model_loads(lm_loading: TestClient, case: str) -> None:
    request, status = BODIES[case]
    response = lm_loading.post("/describe", **request)
    assert response.status_code == status, response.text


def test_a_malformed_describe_is_its_4xx_while_the_service_warms_up(
    settings: Settings, models: Models, tmp_path: Path
) -> None:
    release = threading.Event()
    with TestClient(create_app(settings, factory=gated_factory(models, tmp_path, release))) as client:
        try:
            assert client.get("/readyz").json()["status"] == "loading"
            for case in ("bad JSON", "both fields", "text body"):
                request, status = BODIES[case]
                assert client.post("/describe", **request).status_code == status, case
            too_large = {"image": ("x.png", UPLOADS["too large"][0], "image/png")}
            assert client.post("/describe", files=too_large).status_code == 413
            waiting = client.post("/describe", json={"query": "a red car"})  # valid: needs the service
            assert waiting.status_code == 503 and "warming up" in waiting.json()["detail"]
        finally:
            release.set()


def test_the_redactor_keeps_url_paths_and_hides_server_paths(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    routes = client.app.router.routes  # type: ignore[attr-defined]
    kept = [
        "/describe answers once it has",
        "retry POST /search/image, or GET /images/0123456789abcdef/thumbnail.",
        "call /admin/reload; see /readyz",
    ]
    for text in kept:
        assert public_detail(text, settings, routes) == text
    index = str(settings.index_dir)
    hidden = f"no index at {index}/generations/x; /srv/photos/2019/cat.jpg and /etc/passwd: see /readyz"
    assert public_detail(hidden, settings, routes) == (
        f"no index at IMGSEARCH_INDEX_DIR/generations/x; {SERVER_PATH} and {SERVER_PATH}: see /readyz"
    )
    assert public_detail("/describe failed at /describe/../etc", settings, routes) == (
        f"/describe failed at {SERVER_PATH}"
    )


def test_a_failed_start_names_the_route_to_call_and_hides_the_path(
    settings: Settings, tmp_path: Path
) -> None:
    def broken(loaded: Settings) -> SearchService:
        """A start that fails naming a server path and a route."""
        raise IndexUnavailable(f"cannot read {tmp_path}/private/index; build one, then POST /admin/reload")

    with TestClient(create_app(settings, factory=broken)) as client:
        assert not client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        detail = client.get("/readyz").json()["detail"]
        search = client.get("/search", params={"q": "red"}).json()["detail"]
    reason = f"cannot read {SERVER_PATH}; build one, then POST /admin/reload"
    assert (detail, search) == (reason, f"service unavailable: {reason}")
