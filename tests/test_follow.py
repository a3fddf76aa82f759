"""The service follows the index by itself: a service started before any index serves the first build,
then switches to each new generation, without a request to prompt it, and stops watching with the app."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.build import BuildConfig, build_index
from app.index import live_path
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import make_gallery, png_bytes, service_factory

BUILD = BuildConfig(pca_dim=0, workers=0)


def watchers() -> int:
    """Threads that follow an index, in this process."""
    return sum(thread.name == "follow-index" for thread in threading.enumerate())


def readiness_until(client: TestClient, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll /readyz alone (no other request) until its body is what the test waits for (at most 30 s)."""
    deadline = time.monotonic() + 30
    body: dict[str, Any] = client.get("/readyz").json()
    while not wanted(body):
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
        body = client.get("/readyz").json()
    return body


def test_a_service_started_before_any_index_serves_each_build_without_a_request(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    target.mkdir()  # a new, empty index folder: the service starts before the first build
    settings = Settings(index_dir=target, cache_dir=tmp_path / "cache", device="cpu")
    app = create_app(settings, factory=service_factory(models, tmp_path / "cache"))
    gallery, before = make_gallery(tmp_path / "gallery"), watchers()
    with TestClient(app) as client:
        assert not client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        failed = client.get("/readyz")
        assert failed.status_code == 503 and failed.json()["status"] == "failed"
        assert "no index at IMGSEARCH_INDEX_DIR" in failed.json()["detail"]

        build_index(FolderSource(gallery), target, pipeline, BUILD, progress=False)
        first = live_path(target).name
        ready = readiness_until(client, lambda body: body["status"] == "ready")
        assert (ready["generation"], ready["images"]) == (first, 3)

        (gallery / "yellow.png").write_bytes(png_bytes((220, 220, 20)))
        build_index(FolderSource(gallery), target, pipeline, BUILD, progress=False, update=True)
        second = live_path(target).name
        assert second != first
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while runtime.service.generation != second:  # no request at all while it switches
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = client.get("/readyz").json()
        assert (ready["status"], ready["generation"], ready["images"]) == ("ready", second, 4)
        found = client.post("/search", json={"query": "thing", "top_k": 10}).json()
        assert "yellow.png" in {result["source"] for result in found["results"]}
    assert watchers() == before  # the watcher stopped with the app
