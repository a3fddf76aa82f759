"""What an opened index holds goes with it: threads and open files are released when it is closed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.build import BuildConfig, build_index
from app.pipeline import Pipeline
from app.sources import FolderSource
from tests.conftest import make_collection

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos_index(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the photo collection of tests/conftest.py (names, folders, dates: hybrid and filters)."""
    photos = make_collection(tmp_path_factory.mktemp("photos"))
    index_dir = tmp_path_factory.mktemp("photos-index") / "index"
    build_index(FolderSource(photos), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    return index_dir


def test_fifty_indexes_opened_searched_and_closed_leave_no_thread_or_open_file(
    photos_index: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "tests.resources_subprocess", "--rounds", "50"]
    command += ["--index-dir", str(photos_index), "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    usage = json.loads(done.stdout.splitlines()[-1])
    assert usage["results"] > 0
    assert usage["after"] == usage["before"]  # [threads, open file descriptors]
