"""A build on a disk that fills up says `No space left on device` in one line naming the index folder,
however the write failed (a thumbnail, numpy's vectors, SQLite's manifest), first build or update,
and leaves nothing half-written: the served index as it was, the unpublished generation removed.

Each case runs `imgsearch build` (fake models) on a 1 MiB tmpfs in a user and mount namespace of its
own (tests/full_disk.py); where the kernel offers none, the test is skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import coloured_pictures
from tests.test_reliability import REPO

PAGE = 4096
# After the last batch the disk keeps room for: nothing (its thumbnail fails), its thumbnail and one
# page (vectors.npy fails half-way: numpy's own `N requested and M written`), or also the vectors
# and the features (the SQLite manifest fails: `database or disk is full`).
FAILS_AT = {"thumbnail": 0, "vectors": 2 * PAGE, "manifest": 2 * PAGE + 2 * PAGE + PAGE}


def namespaces() -> bool:
    """True when this user may make a user and mount namespace and mount a tmpfs in it."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not namespaces(), reason="no user and mount namespaces here to mount a small tmpfs")
@pytest.mark.parametrize(
    ("update", "fails_at"),
    [(False, "thumbnail"), (False, "vectors"), (False, "manifest"), (True, "thumbnail"), (True, "vectors")],
    ids=["first-thumbnail", "first-vectors", "first-manifest", "update-thumbnail", "update-vectors"],
)
def test_a_full_disk_is_one_line_naming_the_index_and_leaves_nothing_half_written(
    update: bool, fails_at: str, tmp_path: Path
) -> None:
    images = coloured_pictures(tmp_path / "images", 3, seed=1)
    (tmp_path / "disk").mkdir()
    command = [
        *("unshare", "-rm", sys.executable, "-m", "tests.full_disk"),
        *("--mount", str(tmp_path / "disk"), "--size", str(256 * PAGE), "--images", str(images)),
        *("--cache-dir", str(tmp_path / "cache"), "--text-dim", "1024", "--batches", "3"),
        *("--leave", str(FAILS_AT[fails_at])),
        *(("--more", str(coloured_pictures(tmp_path / "more", 3, seed=2))) if update else ()),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["status"] == 1
    said = [line for line in seen["stderr"].splitlines() if line.strip() and " INFO " not in line]
    said = [line for line in said if not line.startswith("indexing (local)")]
    index = tmp_path / "disk" / "index"
    kept = "the index served was left as it was" if update else "no index was written"
    assert said == [
        f"error: No space left on device: the build could not write the index at {index}; {kept} "
        "(free some space and build again)"
    ]
    if update:
        assert seen["after"] == seen["before"] and seen["after"]["count"] == 3
        generations = [name for name in seen["files"] if name.startswith("index/generations/")]
        served = {name.split("/")[2] for name in generations}
        assert len(served) == 1  # the unpublished generation is gone
    else:
        assert seen["files"] == []  # no index folder, no lock, nothing
