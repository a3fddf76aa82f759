"""The Docker files without Docker: what goes into the build context, tags, keys, ports, the health check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.main import create_app
from app.pipeline import Models
from app.settings import Settings
from scripts.serving import serving as live_app
from tests.conftest import service_factory

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda")


def compose(name: str) -> dict[str, Any]:
    """A compose file, parsed."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker" / name).read_text())
    return loaded


def test_the_build_context_leaves_out_the_venv_data_caches_and_history() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "data", ".git", ".cache", "**/__pycache__"} <= ignored
    for dockerfile in DOCKERFILES:  # what the images do copy is not ignored
        copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile.read_text(), re.MULTILINE)
        assert copied and not {word for line in copied for word in line.split()} & ignored


def test_cpu_and_cuda_builds_have_their_own_tags() -> None:
    cpu, cuda = compose("compose.yaml"), compose("compose.cuda.yaml")
    for service in ("imgsearch", "build"):
        assert cpu["services"][service]["image"] == "imgsearch:cpu"
        assert cuda["services"][service]["image"] == "imgsearch:cuda"
        assert cuda["services"][service]["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert "latest" not in compose("compose.milvus.yaml")["services"]["imgsearch"]["image"]


@pytest.mark.parametrize("name", ["compose.yaml", "compose.milvus.yaml"])
def test_compose_passes_the_keys_and_publishes_on_loopback(name: str) -> None:
    service = compose(name)["services"]["imgsearch"]
    environment = service["environment"]
    assert environment["IMGSEARCH_READ_KEY"] == "${IMGSEARCH_READ_KEY:-}"
    assert environment["IMGSEARCH_API_KEY"] == "${IMGSEARCH_API_KEY:-}"
    assert all(port.startswith("${IMGSEARCH_PUBLISH:-127.0.0.1}:") for port in service["ports"])


def healthcheck_script(dockerfile: Path) -> str:
    """The Python code the image's HEALTHCHECK runs."""
    match = re.search(r'^\s+CMD \["python", "-c", "(.+)"\]$', dockerfile.read_text(), re.MULTILINE)
    assert match, f"no python HEALTHCHECK in {dockerfile}"
    return str(json.loads(f'"{match.group(1)}"'))


@contextmanager
def serving(settings: Settings, models: Models, cache: Path) -> Iterator[int]:
    """The app under uvicorn on a free loopback port; yields the port once warm-up ended."""
    app = create_app(settings, factory=service_factory(models, cache))
    with live_app(app) as base:
        deadline = time.monotonic() + 30
        while app.state.runtime.service is None and app.state.runtime.error is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield int(base.rsplit(":", 1)[1])


def run_healthcheck(dockerfile: Path, port: int, env: dict[str, str]) -> int:
    """Exit status of the image's health check against a server on this port."""
    script = healthcheck_script(dockerfile).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=30).returncode


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_healthcheck_fails_when_the_index_failed_to_load(
    dockerfile: Path, index_dir: Path, models: Models, tmp_path: Path
) -> None:
    broken = Settings(index_dir=tmp_path / "no-index", cache_dir=tmp_path, device="cpu")
    with serving(broken, models, tmp_path) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as alive:
            assert alive.status == 200  # the process lives: the old check called this healthy
        assert run_healthcheck(dockerfile, port, {}) == 1
    good = Settings(index_dir=index_dir, cache_dir=tmp_path, device="cpu", read_key="k3y")
    with serving(good, models, tmp_path) as port:
        assert run_healthcheck(dockerfile, port, {"IMGSEARCH_READ_KEY": "k3y"}) == 0
        assert run_healthcheck(dockerfile, port, {}) == 1  # 401 without the key
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz")
