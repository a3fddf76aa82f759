"""The index folder's layout on disk: file names, generations and the `current` pointer.

Every stage that reads or writes an index folder names its files from here, so the build, the index,
the folder walk and the Milvus stamp agree on what is the project's own.
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
CURRENT = "current"  # symlink to generations/<name>, the generation served
GENERATIONS = "generations"
READERS_LOCK = "readers.lock"  # in each generation: shared flock while an Index has it open
BUILD_LOCK = "build.lock"  # in the index folder: exclusive flock while a build runs


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
    return flat or layered or (folder / CURRENT).is_symlink()
