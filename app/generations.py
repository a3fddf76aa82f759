"""The index folder's life across builds: ownership, the build lock, generations, publishing, cleanup.

The index folder is the project's alone: a build writes only into a new or empty folder or one
holding an index it made, never into or around the images folder, nor into a folder inside an
index (`current`, a generation, `generations/`, `thumbnails/`...: IndexDirRefused naming the index
folder to give instead), and deletes only names it writes.

Crash safety: each build (or later stage of one) writes a new generation,
`<index_dir>/generations/<UTC time>-<random>/`, and `publish` serves it by replacing the symlink
`<index_dir>/current` in one rename, so a build killed at any point leaves the current generation
complete and loadable, and a running service always reads one whole generation (app/index.py).
`new_generation` starts an empty one; `derived_generation` one holding the served generation's
files (linked, or copied where the stage rewrites them), for a stage that adds to a published
index. A generation not published is removed when its block ends, whatever ended it. Generations
no longer current are deleted by `remove_stale` once no reader holds their `readers.lock`; a
running service keeps the ones it still reads. One build at a time per index: an exclusive `flock`
on `<index_dir>/build.lock`, released by the kernel when the build dies (decode workers drop their
inherited copy, app/engines.py). The first build over an older flat index (meta.json in the folder
itself) moves it to this layout.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from app.errors import BuildLocked, IndexDirRefused
from app.layout import (
    ANN_FILE,
    BUILD_LOCK,
    CURRENT,
    FEATURES,
    GENERATIONS,
    MANIFEST,
    META,
    ORIGINALS,
    PCA_FILE,
    READERS_LOCK,
    REPORT,
    TEXT_VECTORS,
    THUMBNAILS,
    VECTORS,
    generation_of,
    inside_index,
    live_path,
    looks_like_index,
)

log = logging.getLogger(__name__)

GENERATION_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")  # what _create names
REMOVING = ".removing-"  # a generation renamed away, about to be deleted
POINTER_TEMP = re.compile(r"^\.current-\d+$")  # `current` being written
FLAT_FILES = (META, VECTORS, FEATURES, TEXT_VECTORS, MANIFEST, PCA_FILE, REPORT, ANN_FILE)
FLAT_FOLDERS = (THUMBNAILS, ORIGINALS)
FLUSHED = (VECTORS, FEATURES, TEXT_VECTORS, MANIFEST, PCA_FILE, REPORT, META, ".")  # before publishing


def check_index_dir(index_dir: Path, images: Path | None) -> None:
    """IndexDirRefused unless `index_dir` is new, empty or an index of ours, apart from the images."""
    enclosing = inside_index(index_dir)
    if enclosing is not None:
        raise IndexDirRefused(
            f"--index-dir {index_dir} is inside the index {enclosing}; a build writes the index folder "
            f"itself, never into it: use --index-dir {enclosing}"
        )
    index_dir = index_dir.resolve()
    if images is not None:
        _check_apart(index_dir, images.resolve())
    if not index_dir.exists() or looks_like_index(index_dir):
        return
    if not index_dir.is_dir():
        raise IndexDirRefused(
            f"--index-dir {index_dir} is a file, not a folder; choose a new or empty folder"
        )
    names = sorted(p.name for p in index_dir.iterdir())
    if names:
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise IndexDirRefused(
            f"--index-dir {index_dir} holds files that are not an index ({shown}); a build writes only "
            "into a new or empty folder or an index it made: choose another folder"
        )


def _check_apart(index_dir: Path, images: Path) -> None:
    """IndexDirRefused when the index folder and the images folder (both resolved) overlap."""
    elsewhere = images.parent / f"{images.name}-index"
    if index_dir == images:
        raise IndexDirRefused(
            f"--index-dir {index_dir} is the images folder: an index needs a folder of its own; "
            f"choose one outside the images, e.g. --index-dir {elsewhere}"
        )
    if index_dir.is_relative_to(images):
        raise IndexDirRefused(
            f"--index-dir {index_dir} is inside the images folder {images}: the next build would "
            f"index the index's thumbnails; choose one outside the images, e.g. --index-dir {elsewhere}"
        )
    if images.is_relative_to(index_dir):
        raise IndexDirRefused(
            f"the images folder {images} is inside --index-dir {index_dir}: the index folder holds "
            f"only what builds write; choose one outside the images, e.g. --index-dir {elsewhere}"
        )


@contextmanager
def locked_index(index_dir: Path) -> Iterator[None]:
    """Make the index folder (and its parents) if needed and hold its build lock (BuildLocked when
    another build does); a block that fails before any generation was ever published leaves no lock,
    no empty generations folder and none of the folders it made."""
    created = [folder for folder in (index_dir, *index_dir.parents) if not folder.exists()]
    index_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(index_dir):
        try:
            yield
        except BaseException:
            if created and generation_of(index_dir) is None:
                _undo_created(index_dir, created)
            raise


def _undo_created(index_dir: Path, created: list[Path]) -> None:
    """Remove a failed first build's lock, its empty generations folder and the folders it made."""
    (index_dir / BUILD_LOCK).unlink(missing_ok=True)
    for folder in [index_dir / GENERATIONS, *created]:  # deepest first; rmdir only takes empty ones
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's build lock, or raise BuildLocked at once when another build holds it."""
    path = index_dir / BUILD_LOCK
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BuildLocked(
                f"another build is writing {index_dir} (lock {path} held by process {holder}); "
                "wait for it to finish, or stop it"
            ) from exc
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _create(index_dir: Path, stores_originals: bool) -> Path:
    """An empty generation: `generations/<UTC time>-<random>/` with its readers lock."""
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    path = index_dir / GENERATIONS / name
    (path / THUMBNAILS).mkdir(parents=True)
    if stores_originals:
        (path / ORIGINALS).mkdir()
    (path / READERS_LOCK).touch()
    return path


@contextmanager
def new_generation(index_dir: Path, stores_originals: bool) -> Iterator[Path]:
    """An empty generation to write (call with the build lock held); removed at the end of the block
    unless `publish` made it the current one."""
    generation = _create(index_dir, stores_originals)
    try:
        yield generation
    finally:
        _discard_unpublished(generation, index_dir)


@contextmanager
def derived_generation(index_dir: Path, rewrite: Collection[str] = (META,)) -> Iterator[Path]:
    """A new generation holding the served one's files, for a stage that adds to a published index
    (call with the build lock held): files hard-linked, those named in `rewrite` copied for the stage
    to change (a linked file changed in place would change the served one too). Removed at the end
    of the block unless `publish` made it the current one."""
    current = live_path(index_dir)
    generation = _create(index_dir, (current / ORIGINALS).is_dir())
    try:
        for path in sorted(current.rglob("*")):
            name = str(path.relative_to(current))
            if path.is_dir():
                (generation / name).mkdir(exist_ok=True)
            elif name in rewrite:
                shutil.copy2(path, generation / name)
            elif path.name != READERS_LOCK:  # the new generation has its own
                link_or_copy(path, generation / name)
        yield generation
    finally:
        _discard_unpublished(generation, index_dir)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a file (same filesystem, no copy), or copy it where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(generation: Path, index_dir: Path) -> None:
    """Serve a finished generation: flush its key files, then replace `current` in one rename."""
    for name in FLUSHED:
        if (generation / name).exists():
            _fsync(generation / name)
    _fsync(generation.parent)
    pointer = index_dir / f".{CURRENT}-{os.getpid()}"
    pointer.unlink(missing_ok=True)
    pointer.symlink_to(Path(GENERATIONS) / generation.name)
    os.replace(pointer, index_dir / CURRENT)
    _fsync(index_dir)


def _discard_unpublished(generation: Path, index_dir: Path) -> None:
    """Remove a generation unless it became the current one."""
    if generation_of(index_dir) != generation.name:
        shutil.rmtree(generation, ignore_errors=True)


def _remove_generation(generation: Path) -> bool:
    """Delete a generation no reader holds (renamed away first, under an exclusive flock); False if in use."""
    try:
        with (generation / READERS_LOCK).open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            dying = generation.with_name(REMOVING + generation.name)
            generation.rename(dying)
    except BlockingIOError:
        return False
    except FileNotFoundError:  # a killed build's generation, before its lock file was made
        dying = generation.with_name(REMOVING + generation.name)
        generation.rename(dying)
    shutil.rmtree(dying, ignore_errors=True)
    return True


def remove_stale(index_dir: Path) -> None:
    """Delete what builds left that nothing serves (call with the build lock held); only names we write."""
    for temp in index_dir.iterdir():
        if POINTER_TEMP.match(temp.name) and temp.is_symlink():
            temp.unlink()
    folder, live = index_dir / GENERATIONS, generation_of(index_dir)
    if live is not None and (index_dir / META).is_file():
        _remove_flat(index_dir)
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name.startswith(REMOVING) and GENERATION_NAME.match(entry.name[len(REMOVING) :]):
            shutil.rmtree(entry, ignore_errors=True)
        elif GENERATION_NAME.match(entry.name) and entry.name != live and entry.is_dir():
            _remove_unserved(entry)


def _remove_unserved(generation: Path) -> None:
    """Delete a generation `current` no longer names, unless a running service still reads it."""
    try:
        removed = _remove_generation(generation)
    except OSError as exc:
        log.warning("could not remove generation %s (%s); a later build tries again", generation.name, exc)
        return
    if removed:
        log.info("removed generation %s, no longer served", generation.name)
    else:
        log.info(
            "kept generation %s: a running service still reads it; a later build removes it", generation.name
        )


def _remove_flat(index_dir: Path) -> None:
    """Delete an old flat index's files (meta.json first) once a generation replaced it."""
    for name in FLAT_FILES:
        (index_dir / name).unlink(missing_ok=True)
    for name in FLAT_FOLDERS:
        if (index_dir / name).is_dir() and not (index_dir / name).is_symlink():
            shutil.rmtree(index_dir / name, ignore_errors=True)
    log.info("moved %s to the generations layout (%s/…)", index_dir, GENERATIONS)
