"""Where images come from for a build: a folder tree or a Hugging Face `datasets` source."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.layout import looks_like_index

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".jfif",
        ".pjpeg",
        ".pjp",
        ".ppm",
        ".pgm",
    }
)


@dataclass(frozen=True)
class Item:
    """One image to index: how to name it and how to get its bytes."""

    source: str
    data: bytes | Path


class Source(Sequence[Item]):
    """Random-access list of items (what a DataLoader's workers index into)."""

    stores_originals: bool = False
    root: Path | None = None


class FolderSource(Source):
    """Every file with an image suffix under a folder, recursively, in sorted order; skips our indexes."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.root = self.folder = root.resolve()
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.folder, followlinks=False):
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and not looks_like_index(Path(folder) / d)
            )
            for name in sorted(files):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                    found.append(Path(folder) / name)
        self.paths = found

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:  # type: ignore[override]
        path = self.paths[i]
        return Item(source=path.relative_to(self.folder).as_posix(), data=path)


class HFDatasetSource(Source):
    """Rows of a `datasets.Dataset`; the image bytes are copied into the index (no files to point at)."""

    stores_originals = True

    def __init__(self, dataset: Any, image_column: str = "image", name: str = "dataset") -> None:
        from datasets import Image as ImageFeature

        if image_column not in dataset.column_names:
            raise ValueError(f"dataset has no column {image_column!r}; columns: {dataset.column_names}")
        if isinstance(dataset.features[image_column], ImageFeature):
            dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
        self.dataset = dataset
        self.column = image_column
        self.name = name

    @classmethod
    def load(cls, name: str, split: str = "train", image_column: str = "image") -> HFDatasetSource:
        """Open a dataset by name or local path with `datasets.load_dataset`."""
        from datasets import load_dataset

        return cls(load_dataset(name, split=split), image_column, name=f"{name}:{split}")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Item:  # type: ignore[override]
        value = self.dataset[int(i)][self.column]
        if isinstance(value, dict):
            data = value.get("bytes") or Path(value["path"]).read_bytes()
        elif isinstance(value, bytes):
            data = value
        else:  # a PIL image
            out = io.BytesIO()
            value.save(out, format="PNG")
            data = out.getvalue()
        return Item(source=f"{self.name}#{i}", data=data)
