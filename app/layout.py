"""The index folder's layout on disk: file names, generations, the `current` pointer, and which index
folder a path belongs to.

Every stage that reads or writes an index folder names its files from here, so the build, the index,
the folder walk and the Milvus stamp agree on what is the project's own. `index_root` answers, for
the commands that write and those that read alike, which index a path given as `--index-dir` lies in
(`current`, a generation, `generations/`, `thumbnails/`, a symlink into an index...).
"""

from __future__ import annotations

import os
from pathlib import Path

META = "meta.json"
VECTORS = "vectors.npy"
FEATURES = "features.npy"
MANIFEST = "manifest.sqlite"
PCA_FILE = "pca.npz"
THUMBNAILS = "thumbnails"
ORIGINALS = "originals"
REPORT = "build_report.json"
TEXT_VECTORS = "text_vectors.npy"  # unprojected text-space vectors, kept when PCA is applied (updates refit)
ANN_FILE = "ann.faiss"  # the vectors' inverted file (or an older index's HNSW graph)
CURRENT = "current"  # symlink to generations/<name>, the generation served
GENERATIONS = "generations"
READERS_LOCK = "readers.lock"  # in each generation: shared flock while an Index has it open
BUILD_LOCK = "build.lock"  # in the index folder: exclusive flock while a build runs
PEOPLE = "people.sqlite"  # in the index folder: people's ids, names, merges and representative faces


def live_path(index_dir: Path) -> Path:
    """The folder holding the served index: the generation `current` names, else index_dir (flat)."""
    pointer = index_dir / CURRENT
    try:
        return index_dir / os.readlink(pointer)
    except OSError:  # no pointer (flat index, or none), or a copy that made `current` a plain folder
        return pointer if pointer.is_dir() else index_dir


def generation_of(index_dir: Path) -> str | None:
    """Name of the generation `current` points at (None for a flat index or none at all)."""
    try:
        return Path(os.readlink(index_dir / CURRENT)).name
    except OSError:
        return None


def looks_like_index(folder: Path) -> bool:
    """True for a folder this project built an index in (either layout, or a first build under way)."""
    flat = (folder / META).is_file() and (folder / MANIFEST).is_file()
    layered = (folder / GENERATIONS).is_dir() and (folder / BUILD_LOCK).is_file()
    return flat or layered or _points_into_generations(folder / CURRENT)


def _points_into_generations(pointer: Path) -> bool:
    """True for a `current` symlink naming one of its folder's generations (not any symlink so named)."""
    try:
        return Path(os.readlink(pointer)).parts[:1] == (GENERATIONS,)
    except OSError:
        return False


def index_root(path: Path) -> Path | None:
    """The index folder that is `path` or holds it, symlinks resolved; None when no index holds it.

    The outermost folder from `path` up that looks like an index: a generation (which looks like a flat
    index by itself), `generations/` and the folders inside either lie in the index around them.
    """
    try:
        resolved = path.resolve()
    except OSError:  # a link this user may not follow: what holds it is not theirs to know
        return None
    found = None
    for folder in (resolved, *resolved.parents):
        try:
            if looks_like_index(folder):
                found = folder
        except OSError:  # a folder this user may not look into holds no index of theirs
            continue
    return found


def inside_index(path: Path) -> Path | None:
    """The index folder `path` lies inside of (not the index folder itself, nor a path no index holds)."""
    root = index_root(path)
    return root if root is not None and root != path.resolve() else None
