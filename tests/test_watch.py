"""`imgsearch watch`: an added and a removed file reach the index, and a running service follows."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import cli
from app.build import BuildConfig, BuildReport
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import Settings
from app.watch import Watcher
from tests.conftest import make_gallery, png_bytes, service_factory
from tests.fakes import COLOURS


def served(client: TestClient, params: dict[str, str], count: int) -> list[str]:
    """The sources a search returns once the service has followed to a generation of `count` images."""
    deadline = time.monotonic() + 30
    while client.get("/readyz").json()["images"] != count:
        assert time.monotonic() < deadline, "the service did not follow the new generation"
        time.sleep(0.05)
    return [result["source"] for result in client.get("/search", params=params).json()["results"]]


def next_report(reports: queue.Queue[BuildReport | None]) -> BuildReport:
    """The next build's report (a failed build fails the test)."""
    report = reports.get(timeout=30)
    assert report is not None
    return report


def test_watch_picks_up_an_added_and_a_removed_file(
    pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    index_dir = tmp_path / "index"
    watcher = Watcher(gallery, index_dir, pipeline, BuildConfig(pca_dim=0, workers=0))
    reports: queue.Queue[BuildReport | None] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, reports.put, 200), daemon=True)
    thread.start()
    try:
        assert next_report(reports).indexed == 3
        settings = Settings(
            index_dir=index_dir, cache_dir=tmp_path / "cache", device="cpu", dedup_threshold=0
        )
        with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
            assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
            client.app.state.runtime.follow_every = 0.0  # type: ignore[attr-defined]
            (gallery / "sub" / "purple-car.png").write_bytes(png_bytes((150, 20, 160)))
            added = next_report(reports)
            assert (added.indexed, added.encoded, added.reused) == (4, 1, 3)
            assert served(client, {"q": "purple car", "mode": "lexical"}, 4) == ["sub/purple-car.png"]
            (gallery / "red.png").unlink()
            removed = next_report(reports)
            assert (removed.indexed, removed.removed) == (3, 1)
            sources = served(client, {"q": "red thing"}, 3)
            assert "red.png" not in sources and len(sources) == 3
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_watch_refuses_a_missing_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["watch", "--images", str(tmp_path / "none"), "--index-dir", str(tmp_path / "index")]
    assert cli.main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "does not exist" in line


def test_watch_ignores_files_that_are_not_images(pipeline: Pipeline, tmp_path: Path) -> None:
    watcher = Watcher(tmp_path, tmp_path.parent / "index", pipeline)
    from watchfiles import Change

    assert watcher.concerns(Change.added, str(tmp_path / "a.jpg"))
    assert not watcher.concerns(Change.added, str(tmp_path / "notes.txt"))
    assert not watcher.concerns(Change.added, str(tmp_path / ".hidden" / "a.jpg"))
    assert watcher.concerns(Change.deleted, str(tmp_path / "holiday"))  # a removed folder of photos
    assert COLOURS  # the gallery's colours are the fakes' classes
