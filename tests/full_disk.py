"""`imgsearch build` on a small disk that fills up mid-build, run in its own mount namespace:
`unshare -rm python -m tests.full_disk --mount DIR ...` (tests/test_no_space.py).

It mounts a tmpfs of `--size` bytes on DIR, builds the first images there when `--more` asks for
an index to update (then adds those), runs the fake-model `imgsearch build` of
tests/build_subprocess.py with the disk filled after its last batch but for `--leave` bytes, and
prints as JSON what a user would see: the exit status, stderr, the files left on that disk, and the
index served before and after. The tmpfs vanishes with the namespace, so everything is read here.
Exit status 77 when the tmpfs cannot be mounted.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from app.index import Index, live_path
from tests import build_subprocess


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mount", type=Path, required=True, help="an empty folder to mount the tmpfs on")
    parser.add_argument("--size", type=int, required=True, help="bytes of the tmpfs")
    parser.add_argument("--images", type=Path, required=True, help="the images of the first build")
    parser.add_argument("--more", type=Path, default=None, help="images added before the --update build")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument("--batches", type=int, required=True, help="batches the build has")
    parser.add_argument("--leave", type=int, default=0, help="bytes left free after the last batch")
    return parser.parse_args(argv)


def build(args: argparse.Namespace, *options: str) -> tuple[int, str]:
    """The fake-model `imgsearch build` of the images into the index on the tmpfs: status, stderr."""
    paths = ["--images", str(args.images), "--index-dir", str(args.mount / "index")]
    cache = ["--cache-dir", str(args.cache_dir), "--text-dim", str(args.text_dim)]
    with redirect_stderr(io.StringIO()) as stderr, redirect_stdout(io.StringIO()):
        status = build_subprocess.main(["--cli", "build", "--batch-size", "1", *paths, *cache, *options])
    return status, stderr.getvalue()


def served(index_dir: Path) -> dict[str, Any] | None:
    """The served index's meta.json and image count (None when there is none)."""
    if not (live_path(index_dir) / "meta.json").is_file():
        return None
    index = Index(index_dir)
    try:
        return {"meta": (live_path(index_dir) / "meta.json").read_text(), "count": index.count}
    finally:
        index.close()


def main(argv: list[str] | None = None) -> int:
    """Mount, build, fill, build, report."""
    args = parse_args(argv)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.size}", "tmpfs", str(args.mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        return 77
    index = args.mount / "index"
    if args.more is not None:
        status, stderr = build(args)
        assert status == 0, stderr
        shutil.copytree(args.more, args.images / args.more.name)
    before = served(index)
    options = ["--fill-after", str(args.batches), "--leave", str(args.leave)]
    status, stderr = build(args, *options, *(["--update"] if args.more is not None else []))
    (args.mount / ".filler").unlink(missing_ok=True)
    files = sorted(str(p.relative_to(args.mount)) for p in args.mount.rglob("*"))
    print(
        json.dumps(
            {
                "status": status,
                "stderr": stderr,
                "files": files,
                "before": before,
                "after": served(index),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
