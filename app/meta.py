"""An index's meta.json, typed: what a build records and the index, the service and Milvus read.

Older meta.json files load: keys they lack take the values older builds implied, keys no longer
written (`identity_bridge`) are ignored. New optional fields get a default here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from app.bridge import BridgeParams
from app.pca import DEFAULT_DIM
from app.settings import COLLECTION_PIXELS

FORMAT_VERSION = 1

AnnMode = Literal["auto", "always", "never"]


def _int_or_none(value: object) -> int | None:
    """An int from JSON, None for null or missing."""
    return None if value is None else int(str(value))


@dataclass(frozen=True)
class BuildSettings:
    """Everything a stored vector, feature or label depends on: an update reuses an index only if equal."""

    profile: str
    image_model: str | None
    text_model: str | None
    bridge: BridgeParams
    flip: bool
    text_dimension: int | None
    label_count: int
    pca_dim: int | None
    pca_centred: bool
    label_model: str = ""  # the classifier whose labels the image encoder returns, if not its own

    def differences(self, now: BuildSettings) -> list[str]:
        """`key: index X, now Y` for each setting that differs (`bridge.key` for the bridge's)."""
        found: list[str] = []
        for entry in fields(self):
            key, was, new = entry.name.replace("_", " "), getattr(self, entry.name), getattr(now, entry.name)
            if isinstance(was, BridgeParams) and isinstance(new, BridgeParams):
                old_params, new_params = was.to_json(), new.to_json()
                found += [
                    f"{key}.{sub}: index {old_params[sub]!r}, now {new_params[sub]!r}"
                    for sub in old_params
                    if old_params[sub] != new_params[sub]
                ]
            elif was != new:
                found.append(f"{key}: index {was!r}, now {new!r}")
        return found


@dataclass(frozen=True)
class Dims:
    """Dimensions of the stored vectors, of the text space before PCA, and of the visual features."""

    vector: int
    text: int | None = None
    feature: int | None = None


@dataclass(frozen=True)
class PcaInfo:
    """The PCA applied to the stored vectors."""

    dim: int
    centred: bool = False


@dataclass
class BuildConfig:
    """Parameters of one build, recorded in meta.json as BuildInfo (app/build.py runs it)."""

    pca_dim: int = DEFAULT_DIM
    pca_centred: bool = False
    batch_size: int = 32
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    label_k: int = 5
    max_pixels: int = COLLECTION_PIXELS  # the collection's own files (uploads: Settings.max_image_pixels)
    ann: AnnMode = "auto"  # ANN file: always, never, or auto (from ann_min vectors on)
    ann_min: int = 100_000
    ocr: bool = True  # read the text in pictures after publishing (app/text_stage.py); not a build setting
    faces: bool = False  # find faces and group people after publishing (app/face_stage.py); opt-in
    drop_faces: bool = False  # serve the index without faces and delete the people store (--no-faces)


@dataclass(frozen=True)
class BuildInfo:
    """How the build ran (the parameters of BuildConfig it recorded, and its engine)."""

    batch_size: int | None = None
    workers: int | None = None
    pca_dim: int | None = None
    pca_centred: bool = False
    label_k: int = 5
    ann: bool = False
    update: bool = False
    engine: str = "local"


@dataclass(frozen=True)
class IndexMeta:
    """The contents of meta.json."""

    profile: str
    models: dict[str, str]  # model id by role: image, text, lm, and labels when another classifier gave them
    dims: Dims
    count: int
    bridge: BridgeParams = field(default_factory=lambda: BridgeParams.from_json({}))
    flip: bool = True
    pca: PcaInfo | None = None
    collection_root: str | None = None  # originals on disk; None when the index stores them
    source: str | None = None
    build: BuildInfo = field(default_factory=BuildInfo)
    created_at: str | None = None
    build_id: str | None = None  # names this build's Milvus collection (app/milvus.py)
    precision: str = "fp32"  # the image encoder's; JSON `precision.image`
    vector_dtype: str = "float16"
    format_version: int = FORMAT_VERSION

    def build_settings(self) -> BuildSettings:
        """The settings this index was built with."""
        return BuildSettings(
            profile=self.profile,
            image_model=self.models.get("image"),
            text_model=self.models.get("text"),
            bridge=self.bridge,
            flip=self.flip,
            text_dimension=self.dims.text,
            label_count=self.build.label_k,
            pca_dim=self.build.pca_dim,
            pca_centred=self.build.pca_centred,
            label_model=self.models.get("labels", ""),  # indexes from before it: the image model's own
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, as meta.json holds it."""
        data = asdict(self)
        data["bridge"] = self.bridge.to_json()
        data["precision"] = {"image": self.precision}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexMeta:
        """Inverse of to_json; ValueError when a required key is missing or ill-typed."""
        try:
            return cls._read(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"meta.json is malformed: {exc!r}") from exc

    @classmethod
    def _read(cls, data: dict[str, Any]) -> IndexMeta:
        """from_json without the error translation."""
        dims, build, pca = data.get("dims") or {}, data.get("build") or {}, data.get("pca")
        centred = bool(pca.get("centred", False)) if pca else False
        return cls(
            profile=str(data["profile"]),
            models={str(role): str(model) for role, model in data["models"].items()},
            dims=Dims(int(dims["vector"]), _int_or_none(dims.get("text")), _int_or_none(dims.get("feature"))),
            count=int(data["count"]),
            bridge=BridgeParams.from_json(data.get("bridge") or {}),
            flip=bool(data.get("flip", True)),
            pca=PcaInfo(int(pca["dim"]), centred) if pca else None,
            collection_root=data.get("collection_root"),
            source=data.get("source"),
            build=BuildInfo(
                batch_size=_int_or_none(build.get("batch_size")),
                workers=_int_or_none(build.get("workers")),
                pca_dim=_int_or_none(build.get("pca_dim")),
                pca_centred=bool(build.get("pca_centred", centred)),
                label_k=int(build.get("label_k", 5)),
                ann=bool(build.get("ann", False)),
                update=bool(build.get("update", False)),
                engine=str(build.get("engine", "local")),
            ),
            created_at=data.get("created_at"),
            build_id=data.get("build_id"),
            precision=str((data.get("precision") or {}).get("image", "fp32")),
            vector_dtype=str(data.get("vector_dtype", "float16")),
            format_version=int(data.get("format_version", 0)),
        )
