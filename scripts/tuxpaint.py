"""Tux Paint's captioned stamps (Debian `tuxpaint-stamps-default`) and other Debian packages, via apt-get."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "tuxpaint-stamps-default"
STAMPS = Path("usr/share/tuxpaint/stamps")
EXCLUDED = "symbols"
BENCH_CACHE = Path.home() / ".cache" / "imgsearch" / "bench"  # where the benches unpack the package


@dataclass(frozen=True)
class Stamp:
    """One stamp image: its path under the stamps folder and its caption."""

    path: str
    caption: str


def _run(command: list[str], cwd: Path) -> bool:
    """Run a command in `cwd`; True when it exits 0, else log its error output."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.warning("%s failed (%d): %s", " ".join(command), result.returncode, result.stderr.strip()[-800:])
    return result.returncode == 0


def fetch_package(package: str, cache_dir: Path) -> Path:
    """The unpacked root of a Debian package; `apt-get download` and `dpkg-deb -x` it on first use."""
    unpacked = cache_dir / package
    if unpacked.is_dir():
        return unpacked
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache_dir.glob(f"{package}_*.deb"))
    if not debs:
        log.info("downloading %s into %s", package, cache_dir)
        download = ["apt-get", "download", package]
        if not _run(download, cache_dir):
            _run(["apt-get", "update"], cache_dir)
            if not _run(download, cache_dir):
                raise RuntimeError(f"cannot download {package} with apt-get (see the warnings above)")
        debs = sorted(cache_dir.glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {package} left no .deb in {cache_dir}")
    tmp = cache_dir / f".{package}.unpacking-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True)
    shutil.rmtree(unpacked, ignore_errors=True)
    tmp.rename(unpacked)
    return unpacked


def fetch_stamps(cache_dir: Path) -> Path:
    """The unpacked stamps folder of Tux Paint's package (fetched on first use)."""
    unpacked = fetch_package(PACKAGE, cache_dir)
    stamps = unpacked / STAMPS
    if not stamps.is_dir():
        raise RuntimeError(f"{PACKAGE} has no {STAMPS}")
    return stamps


def collect(stamps: Path, limit: int | None) -> list[Stamp]:
    """Every NAME.png outside symbols/ with a NAME.txt beside it; caption = its first line, stripped."""
    found: list[Stamp] = []
    for png in sorted(stamps.rglob("*.png")):
        relative = png.relative_to(stamps)
        caption_file = png.with_suffix(".txt")
        if relative.parts[0] == EXCLUDED or not caption_file.is_file():
            continue
        lines = caption_file.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = lines[0].strip() if lines else ""
        if caption:
            found.append(Stamp(relative.as_posix(), caption))
    return found[:limit] if limit else found


def stage(stamps: Path, selected: list[Stamp], folder: Path) -> None:
    """Copy the selected images into `folder`, keeping their relative paths (and nothing else)."""
    for stamp in selected:
        target = folder / stamp.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stamps / stamp.path, target)


def split_of(caption: str) -> str:
    """Fixed benchmark half of a caption group: 'tune' or 'report', by a hash of the caption."""
    return "tune" if hashlib.sha256(caption.encode()).digest()[0] % 2 == 0 else "report"
