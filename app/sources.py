"""Where images come from for a build: a folder tree or a Hugging Face `datasets` source."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import formats
from app.formats import SUFFIXES
from app.layout import looks_like_index

IMAGE_SUFFIXES = SUFFIXES  # what the folder walk takes: the suffixes of app.formats


@dataclass(frozen=True)
class Unreadable:
    """A file the build cannot read in this process: its format's plugin is not installed."""

    source: str
    format: str
    reason: str  # "pillow-heif not installed"


@dataclass(frozen=True)
class Item:
    """One image to index: how to name it and how to get its bytes."""

    source: str
    data: bytes | Path


class Source(Sequence[Item]):
    """Random-access list of items (what a DataLoader's workers index into)."""

    stores_originals: bool = False
    root: Path | None = None
    unreadable: Sequence[Unreadable] = ()  # files set aside, reported once per build (app/writing.py)

    def texts(self, source: str) -> tuple[list[str], list[str]]:
        """(descriptions, keywords) the source itself gives the item named `source` (none by default)."""
        return [], []


class FolderSource(Source):
    """Every file with an image suffix under a folder, recursively, in sorted order; skips our indexes.

    A camera RAW file beside a picture of the same shot (same folder and stem: IMG_1.CR2 and IMG_1.JPG)
    is not an item of its own: it is that picture's alternate original (`alternates`). A file whose
    format's plugin is not installed is `unreadable`, not an item.
    """

    def __init__(self, root: Path) -> None:
        if root.is_file():
            raise NotADirectoryError(f"{root} is a file, not a folder: --images takes a folder of images")
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
        self.paths, self.unreadable = self._sorted_out(found)

    def _sorted_out(self, found: list[Path]) -> tuple[list[Path], list[Unreadable]]:
        """The files to read: without the RAW files that have a picture beside them, nor unreadable ones."""
        shots = {(path.parent, path.stem.lower()) for path in found if not _is_raw(path) and _readable(path)}
        kept: list[Path] = []
        unreadable: list[Unreadable] = []
        for path in found:
            if _is_raw(path) and (path.parent, path.stem.lower()) in shots:
                continue  # served as an alternate of its picture
            fmt = formats.format_of_file(path.name)
            reason = formats.unavailable(fmt) if fmt is not None else None
            if fmt is not None and reason is not None:
                unreadable.append(Unreadable(path.relative_to(self.folder).as_posix(), fmt.name, reason))
            else:
                kept.append(path)
        return kept, unreadable

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:  # type: ignore[override]
        path = self.paths[i]
        return Item(source=path.relative_to(self.folder).as_posix(), data=path)


def _is_raw(path: Path) -> bool:
    """True for a camera RAW file."""
    return formats.raw_format(path.name) is not None


def _readable(path: Path) -> bool:
    """True when this process has what reads the file's format."""
    fmt = formats.format_of_file(path.name)
    return fmt is not None and formats.unavailable(fmt) is None


def alternates(path: Path) -> list[Path]:
    """The camera RAW files of the same shot as the picture `path` (its folder, its stem), sorted."""
    if _is_raw(path):
        return []
    stem = path.stem.lower()
    try:
        beside = sorted(path.parent.iterdir())
    except OSError:
        return []
    return [
        other
        for other in beside
        if other.stem.lower() == stem
        and not other.name.startswith(".")
        and _is_raw(other)
        and other.is_file()
    ]


class HFDatasetSource(Source):
    """Rows of a `datasets.Dataset`; the image bytes are copied into the index (no files to point at).

    Each row's source reads `name[split]#row` (the dataset, its split and the row number).
    """

    stores_originals = True

    def __init__(
        self,
        dataset: Any,
        image_column: str = "image",
        name: str = "dataset",
        text_columns: Sequence[str] = (),
    ) -> None:
        from datasets import Image as ImageFeature

        images = image_columns(dataset.features)
        if image_column not in dataset.column_names:
            raise ValueError(
                f"the dataset has no column {image_column!r}; {_columns_hint(dataset.column_names, images)}"
            )
        if image_column not in images:
            raise ValueError(
                f"column {image_column!r} does not hold images ({_kind(dataset.features[image_column])}); "
                + _columns_hint(dataset.column_names, images)
            )
        if isinstance(dataset.features[image_column], ImageFeature):
            dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
        missing = [column for column in text_columns if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"the dataset has no column {missing[0]!r} (--text-column); its columns: "
                + ", ".join(dataset.column_names)
            )
        self.dataset = dataset
        self.column = image_column
        self.name = name
        self.text_columns = tuple(dict.fromkeys(text_columns))
        self._texts = dataset.select_columns(list(self.text_columns)) if self.text_columns else None

    @classmethod
    def load(
        cls, name: str, split: str = "train", image_column: str = "image", text_columns: Sequence[str] = ()
    ) -> HFDatasetSource:
        """Open a folder written by `save_to_disk` (Dataset or DatasetDict), or a dataset by name or path."""
        from datasets import DatasetDict, load_dataset, load_from_disk

        folder = Path(name)
        if not any((folder / marker).is_file() for marker in SAVED_MARKERS):
            return cls(load_dataset(name, split=split), image_column, f"{name}[{split}]", text_columns)
        saved = load_from_disk(str(folder))
        if isinstance(saved, DatasetDict):
            if split not in saved:
                raise ValueError(f"{name} has no split {split!r}; its splits: {', '.join(saved)} (--split)")
            return cls(saved[split], image_column, f"{name}[{split}]", text_columns)
        label = f"{name}[{saved.split}]" if saved.split else name  # one split saved on its own
        return cls(saved, image_column, label, text_columns)

    def texts(self, source: str) -> tuple[list[str], list[str]]:
        """The `--text-column`s of row `name#i`: a text is a description, a list's items are keywords."""
        prefix, _, number = source.rpartition("#")
        if self._texts is None or prefix != self.name or not number.isdigit():
            return [], []
        row = self._texts[int(number)]
        descriptions: list[str] = []
        keywords: list[str] = []
        for column in self.text_columns:
            value = row[column]
            if isinstance(value, str):
                descriptions.append(value)
            else:
                keywords.extend(_strings(value, self.dataset.features[column]))
        return descriptions, keywords

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


def _strings(value: Any, feature: Any) -> list[str]:
    """The texts inside a column value: strings, class labels by name, lists and dicts walked through."""
    from datasets import ClassLabel

    if isinstance(feature, list | tuple):
        feature = feature[0] if feature else None
    inner = getattr(feature, "feature", None)  # a Sequence or List feature
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int) and isinstance(feature, ClassLabel):
        return [feature.int2str(value)] if 0 <= value < feature.num_classes else []
    if isinstance(value, dict):
        fields = inner if isinstance(inner, dict) else feature if isinstance(feature, dict) else {}
        return [text for key, item in value.items() for text in _strings(item, fields.get(key))]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item, inner if inner is not None else feature)]
    return []


SAVED_MARKERS = ("state.json", "dataset_dict.json")  # what `save_to_disk` writes (Dataset, DatasetDict)


def image_columns(features: dict[str, Any]) -> list[str]:
    """Columns that hold images: the Image feature, raw bytes, or {bytes, path} structs."""
    from datasets import Image as ImageFeature, Value

    def holds_images(feature: Any) -> bool:
        if isinstance(feature, ImageFeature):
            return True
        if isinstance(feature, Value):
            return feature.dtype in {"binary", "large_binary"}
        return isinstance(feature, dict) and "bytes" in feature and holds_images(feature["bytes"])

    return [name for name, feature in features.items() if holds_images(feature)]


def _kind(feature: Any) -> str:
    """What a column holds, in a few words."""
    dtype = getattr(feature, "dtype", None)
    return {"string": "text", "large_string": "text"}.get(str(dtype), str(dtype or type(feature).__name__))


def _columns_hint(columns: list[str], images: list[str]) -> str:
    """Which columns to choose from, for --image-column."""
    if not images:
        return f"none of its columns ({', '.join(columns)}) holds images"
    return f"columns that hold images: {', '.join(images)} (--image-column)"
