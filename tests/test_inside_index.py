"""A path inside an index (`current`, a generation, `generations/`, `thumbnails/`, a symlink into one):
the commands that write refuse it in one line naming the index folder, those that read read that index.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import cli
from app.assembly import ServiceFactory
from app.build import BuildConfig, build_index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.settings import load_settings
from app.sources import FolderSource, HFDatasetSource
from scripts import build_index as build_script
from tests.conftest import make_gallery, png_bytes, service_factory
from tests.fakes import COLOURS

CONFIG = BuildConfig(workers=0, pca_dim=0)


def generation(index: Path) -> Path:
    """The generation `current` names."""
    return index / "generations" / os.readlink(index / "current").split("/")[-1]


def linked(root: Path, name: str, target: Path) -> Path:
    """A symlink outside the index pointing into it."""
    link = root / "links" / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target)
    return link


# Each kind of path that lies inside an index: (the path, the index folder that holds it).
PATHS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "current": lambda root: (root / "idx" / "current", root / "idx"),
    "generation": lambda root: (generation(root / "idx"), root / "idx"),
    "generations": lambda root: (root / "idx" / "generations", root / "idx"),
    "thumbnails": lambda root: (root / "idx" / "current" / "thumbnails", root / "idx"),
    "generation-thumbnails": lambda root: (generation(root / "idx") / "thumbnails", root / "idx"),
    "originals": lambda root: (root / "hf" / "current" / "originals", root / "hf"),
    "new-folder": lambda root: (root / "idx" / "mine" / "index", root / "idx"),
    "current-parent": lambda root: (root / "idx" / "current" / "..", root / "idx"),
    "link-to-current": lambda root: (linked(root, "a", root / "idx" / "current"), root / "idx"),
    "link-to-thumbnails": lambda root: (
        linked(root, "b", generation(root / "idx") / "thumbnails"),
        root / "idx",
    ),
    "flat-thumbnails": lambda root: (root / "flat" / "thumbnails", root / "flat"),
}


@pytest.fixture(scope="module")
def indexes(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a generations index of the gallery (idx), one of a dataset that keeps its
    originals (hf) and an old flat index (flat)."""
    from datasets import Dataset, Image as ImageFeature
    from PIL import Image

    root = tmp_path_factory.mktemp("indexes")
    gallery = make_gallery(root / "gallery")
    build_index(FolderSource(gallery), root / "idx", pipeline, CONFIG, progress=False)
    pictures = [Image.new("RGB", (20, 10), COLOURS[name]) for name in ("red", "green")]
    dataset = Dataset.from_dict({"image": pictures}).cast_column("image", ImageFeature())
    source = HFDatasetSource(dataset, "image", name="memory")
    build_index(source, root / "hf", pipeline, CONFIG, progress=False)
    shutil.copytree(generation(root / "idx"), root / "flat")
    (root / "flat" / "readers.lock").unlink()
    return root


@pytest.fixture
def where(indexes: Path, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """The path of this test's kind, and the index folder that holds it (resolved)."""
    shutil.rmtree(indexes / "links", ignore_errors=True)
    path, index = PATHS[request.param](indexes)
    return path, index.resolve()


def snapshot(root: Path) -> dict[str, Any]:
    """Everything under `root`, symlinks not followed: files by content, links by target, folders."""
    found: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = ("folder",)
            else:
                found[key] = ("file", path.read_bytes())
    return found


def refused_in_one_line(capsys: pytest.CaptureFixture[str], index: Path) -> None:
    """The command said, in one line, which index folder to give instead."""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "is inside the index" in lines[0]
    assert lines[0].endswith(f"use --index-dir {index}")


@pytest.fixture
def fake_profile(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`build` and `watch` get the fake pipeline; a watcher that got as far as running returns at once."""
    import app.build_ray
    from app.watch import Watcher

    ran: list[str] = []
    monkeypatch.setattr(app.build_ray, "ProfilePipeline", lambda *args, **kwargs: lambda: pipeline)
    monkeypatch.setattr(Watcher, "run", lambda self, *args, **kwargs: ran.append(str(self.index_dir)))
    return ran


WRITERS: dict[str, Callable[[Path, Path], int]] = {
    "build": lambda images, index: cli.main(
        ["build", "--images", str(images), "--index-dir", str(index), "--workers", "0"]
    ),
    "scripts.build_index": lambda images, index: build_script.main(
        ["--images", str(images), "--index-dir", str(index), "--workers", "0"]
    ),
    "watch": lambda images, index: cli.main(["watch", "--images", str(images), "--index-dir", str(index)]),
}


@pytest.mark.parametrize("command", list(WRITERS))
@pytest.mark.parametrize("where", list(PATHS), indirect=True)
def test_a_command_that_writes_refuses_a_path_inside_an_index(
    command: str,
    where: tuple[Path, Path],
    indexes: Path,
    fake_profile: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, index = where
    before = snapshot(indexes)
    assert WRITERS[command](indexes / "gallery", path) == 1
    refused_in_one_line(capsys, index)
    assert snapshot(indexes) == before  # nothing written, moved or removed
    assert fake_profile == []


def test_a_build_api_call_inside_an_index_is_refused_too(indexes: Path, pipeline: Pipeline) -> None:
    from app.errors import IndexDirRefused

    before = snapshot(indexes)
    with pytest.raises(IndexDirRefused, match=f"use --index-dir {(indexes / 'idx').resolve()}$"):
        build_index(FolderSource(indexes / "gallery"), indexes / "idx" / "current", pipeline, CONFIG)
    assert snapshot(indexes) == before


@pytest.fixture
def factory(models: Models, tmp_path: Path) -> ServiceFactory:
    """The service over the fake models."""
    return service_factory(models, tmp_path / "cache")


@pytest.mark.parametrize("command", ["search", "describe"])
@pytest.mark.parametrize("where", list(PATHS), indirect=True)
def test_search_and_describe_read_the_index_around_the_path(
    command: str,
    where: tuple[Path, Path],
    indexes: Path,
    factory: ServiceFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, index = where
    before = snapshot(indexes)
    asked = ["search", "a red thing", "--top-k", "1"]
    if command == "describe":
        asked = ["describe", str(indexes / "gallery" / "red.png")]
    assert cli.main([*asked, "--index-dir", str(path)], factory=factory) == 0
    first = capsys.readouterr().out.splitlines()[0]
    if command == "search":
        assert first.endswith("red.png" if index.name != "hf" else "memory#0")
    else:
        assert first == "A mostly red drawing of a red thing."  # as in test_cli: the index was found
    assert snapshot(indexes) == before


@pytest.mark.parametrize("where", list(PATHS), indirect=True)
def test_serve_reads_the_index_around_the_path(
    where: tuple[Path, Path],
    indexes: Path,
    factory: ServiceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    path, index = where
    before = snapshot(indexes)
    served: list[int] = []

    def run(*args: Any, **kwargs: Any) -> None:
        """What uvicorn would serve: the app over the settings `serve` put in the environment."""
        with TestClient(create_app(load_settings(), factory=factory)) as client:
            assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
            served.append(client.get("/readyz").json()["images"])

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("IMGSEARCH_INDEX_DIR", "unused")
    assert cli.main(["serve", "--index-dir", str(path)]) == 0
    assert served == [2 if index.name == "hf" else 3]
    assert snapshot(indexes) == before


def test_a_service_given_current_follows_the_index_s_new_generations(
    models: Models, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    build_index(FolderSource(gallery), tmp_path / "idx", pipeline, CONFIG, progress=False)
    monkeypatch.setenv("IMGSEARCH_INDEX_DIR", str(tmp_path / "idx" / "current"))
    factory = service_factory(models, tmp_path / "cache")
    with TestClient(create_app(load_settings(), factory=factory)) as client:
        assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]
        client.app.state.runtime.follow_every = 0.0  # type: ignore[attr-defined]
        (gallery / "purple-car.png").write_bytes(png_bytes((150, 20, 160)))
        build_index(FolderSource(gallery), tmp_path / "idx", pipeline, CONFIG, progress=False, update=True)
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["images"] != 4:
            assert time.monotonic() < deadline, "the service did not follow the new generation"
            time.sleep(0.05)
        hit = client.get("/search", params={"q": "purple car", "mode": "lexical"}).json()["results"][0]
        assert hit["source"] == "purple-car.png"
        assert client.get(f"/images/{hit['id']}/thumbnail").status_code == 200
