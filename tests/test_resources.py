"""What an opened index holds goes with it: threads and open files are released when it is closed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_fifty_indexes_opened_searched_and_closed_leave_no_thread_or_open_file(
    index_dir: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "tests.resources_subprocess", "--rounds", "50"]
    command += ["--index-dir", str(index_dir), "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    usage = json.loads(done.stdout.splitlines()[-1])
    assert usage["results"] > 0
    assert usage["after"] == usage["before"]  # [threads, open file descriptors]
