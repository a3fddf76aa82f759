"""A killed or interrupted build leaves nothing behind: no decode worker, no held lock, nothing
half-written; a watcher that finds the lock taken waits for it and then indexes what it missed.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from app.build import BuildConfig, BuildReport, build_index
from app.generations import build_lock
from app.index import Index, live_path
from app.pipeline import Pipeline
from app.sources import FolderSource
from app.watch import Watcher
from tests.conftest import coloured_pictures
from tests.test_reliability import generations, start_build, wait_for_pause

CONFIG = BuildConfig(pca_dim=0, workers=0)
PROGRESS = re.compile(r"^indexing \(local\):|.* INFO ")  # the progress bar and log lines, not messages


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def served(index_dir: Path) -> tuple[str, int]:
    """The served generation's meta.json and image count."""
    index = Index(index_dir)
    try:
        return (live_path(index_dir) / "meta.json").read_text(), index.count
    finally:
        index.close()


@pytest.fixture
def photos(pipeline: Pipeline, tmp_path: Path) -> Path:
    """A folder of 12 pictures with a served index of the first 4 (the rest are new to it)."""
    folder = coloured_pictures(tmp_path / "photos", 4, seed=1)
    build_index(FolderSource(folder), tmp_path / "index", pipeline, CONFIG, progress=False)
    coloured_pictures(folder / "more", 8, seed=2)
    return folder


def test_a_killed_build_leaves_no_worker_and_the_next_build_starts_at_once(
    photos: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    build = start_build(
        photos, target, tmp_path / "cache", "--update", "--workers", "2", "--pause-after", "1"
    )
    try:
        wait_for_pause(build)  # mid-encode, its two decode workers running
        workers = children(build.pid)
        assert len(workers) == 2
        build.kill()
        assert build.wait() == -signal.SIGKILL
    finally:
        build.kill()
    # At once: neither the dead build nor its workers hold the lock.
    report = build_index(FolderSource(photos), target, pipeline, CONFIG, progress=False, update=True)
    assert (report.indexed, report.reused, report.encoded) == (12, 4, 8)
    assert generations(target) == [live_path(target).name]  # the killed build's generation is gone
    deadline = time.monotonic() + 30  # the kernel kills the workers with their parent
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"decode workers outlived the build: {workers}"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["build", "watch"])
def test_ctrl_c_mid_encode_is_one_line_status_130_no_child_and_the_index_as_it_was(
    command: str, photos: Path, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    before = served(target)
    options = ["--cli", command, "--update", "--workers", "2", "--pause-after", "1"]
    build = start_build(photos, target, tmp_path / "cache", *options)
    try:
        wait_for_pause(build)
        workers = children(build.pid)
        assert len(workers) == 2
        os.killpg(build.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        _, err = build.communicate(timeout=60)
    finally:
        build.kill()
    assert build.returncode == 130
    said = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(said) == 1 and said[0].startswith("interrupted: "), err  # no traceback
    assert "nothing half-written" in said[0]
    assert not [pid for pid in workers if alive(pid)]  # stopped before the build exited
    assert served(target) == before
    assert generations(target) == [live_path(target).name]  # the unpublished generation is gone
    assert json.loads(before[0])["count"] == 4


def test_a_watcher_that_finds_the_lock_taken_waits_and_then_indexes_what_it_missed(
    photos: Path, pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "index"
    watcher = Watcher(photos, target, pipeline, CONFIG)
    reports: queue.Queue[BuildReport | None] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, reports.put, 200), daemon=True)
    try:
        with build_lock(target.resolve()):  # another build runs as the watcher starts
            thread.start()
            deadline = time.monotonic() + 30
            while not any("another build is writing" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the watcher never tried to build"
                time.sleep(0.05)
        first = reports.get(timeout=30)  # no file changes after the lock is free: it retries by itself
        assert first is not None and (first.indexed, first.reused, first.encoded) == (12, 4, 8)
        assert served(target)[1] == 12
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


@pytest.fixture(autouse=True)
def _watch_log(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the watcher's warnings."""
    caplog.set_level(logging.INFO, logger="app.watch")
