"""Service and build settings, read once from `IMGSEARCH_*` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError as SourceError

from app.errors import BadSetting
from app.layout import inside_index
from app.options import DEFAULT_DEDUP_THRESHOLD, MAX_QUERY_CHARS, Backend, SearchOptions

Profile = Literal["packaged", "seed", "clip"]
DEVICES = "auto, cpu, cuda, cuda:N or mps"
COLLECTION_PIXELS = 400_000_000  # 2× the largest phone sensors; JPEGs decode reduced (app/preprocessing)
Precision = Literal["int8", "fp32"]
Labeller = Literal["lite2", "lite0+lite2", "own"]
LABELLER_CHOICES = ("lite2", "lite0+lite2", "own")


class Settings(BaseSettings):
    """All knobs of the service; invalid values fail at start-up, not at first request."""

    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_", extra="ignore")

    index_dir: Path = Path("data/index")
    profile: Profile | None = Field(
        default=None, description="Model profile; None means 'the profile the index was built with'."
    )
    device: str = "auto"
    model_dir: Path | None = Field(default=None, description="Folder of local model copies (seed/clip).")
    image_model: str | None = None
    text_model: str | None = None
    lm_model: str | None = None
    cache_dir: Path = Path.home() / ".cache" / "imgsearch"
    max_upload_mb: float = 20.0
    max_image_pixels: int = Field(default=50_000_000, description="Pixel limit of uploaded images.")
    max_collection_pixels: int = Field(
        default=COLLECTION_PIXELS,
        description="Pixel limit of the collection's own files at build time (decompression-bomb guard).",
    )
    cors_origins: list[str] = Field(default_factory=list)
    max_query_chars: int = Field(
        default=MAX_QUERY_CHARS,
        ge=1,
        le=MAX_QUERY_CHARS,
        description="Longest text query searched or described; longer ones are a 422.",
    )
    describe_max_new_tokens: int = 20
    query_cache_size: int = 1024
    api_key: SecretStr | None = Field(
        default=None, description="Key for the admin endpoints (header X-API-Key); unset: admin disabled."
    )
    read_key: SecretStr | None = Field(
        default=None,
        description="Key every endpoint but /healthz asks for (X-API-Key, Bearer or the page's session); "
        "unset: open to whoever can connect.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address `imgsearch serve` binds to; the service warns when it is not loopback and "
        "no read key is set.",
    )
    dedup_threshold: float = Field(
        default=DEFAULT_DEDUP_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Visual cosine at which results collapse into one (app/ranking.py); 0 turns it off.",
    )
    vector_backend: Backend = Field(
        default="matrix", description="matrix: the index's own vectors (exact or ANN); milvus: a store."
    )
    ann_threshold: int = Field(
        default=100_000, ge=0, description="From this many vectors the matrix backend uses its ANN file."
    )
    ann_nprobe: int = Field(
        default=96,
        ge=1,
        le=65_536,
        description="Inverted-file cells a query probes (more: slower, finds more).",
    )
    ann_ef_search: int = Field(
        default=512, ge=1, le=4096, description="Search breadth of an older index's HNSW graph."
    )
    milvus_uri: str | None = Field(
        default=None, description="Milvus Lite file path or http(s) URI of a Milvus server (backend milvus)."
    )
    milvus_collection: str = "images"
    precision: Precision = Field(
        default="int8",
        description="CPU image encoder: int8 (quantized once, cached) or fp32; accelerators keep float16.",
    )
    ocr: bool = Field(
        default=True,
        description="Builds and the watcher read the text in pictures (PP-OCRv4, app/ocr.py) after "
        "publishing search by meaning; false (or `imgsearch build --no-ocr`) turns it off.",
    )
    faces: bool = Field(
        default=False,
        description="Builds and the watcher find the faces in pictures and group them into people (dlib, "
        "app/faces.py; biometric data, kept inside the index: docs/people.md) after publishing search by "
        "meaning; true does what `imgsearch build --faces` does.",
    )
    face_side: int = Field(
        default=1024,
        ge=320,
        le=4096,
        description="Long side (px) of the copy the face detector scans: it finds faces of at least about "
        "1/13 of a picture's long side at 1024 (about 240 px in a 12 MP photo); smaller is cheaper and "
        "finds only larger faces (768: a third less CPU per photo, faces from about 420 px in a 12 MP "
        "photo; docs/people.md).",
    )
    labeller: Labeller = Field(
        default="lite0+lite2",
        description="packaged profile: class probabilities of EfficientNet-Lite0 (its 224 px input) and "
        "EfficientNet-Lite2 (its own 260 px input) mixed 0.25 : 0.75 (lite0+lite2), Lite2's alone (lite2) "
        "or Lite0's alone (own: 0.3× the encoder's work); features are Lite0's either way",
    )

    @field_validator("index_dir")
    @classmethod
    def _enclosing_index(cls, value: Path) -> Path:
        """A path inside an index (`current`, a generation, `thumbnails/`, a symlink into one) reads the
        index around it: the service then follows that index's new generations, and writes nothing."""
        return inside_index(value) or value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        """Accept auto, cpu, cuda, cuda:N and mps, the accelerators only where this machine has them."""
        value = value.strip().lower()
        if value in {"auto", "cpu"}:
            return value
        if value in {"cuda", "mps"} or (value.startswith("cuda:") and value[5:].isdigit()):
            _check_accelerator(value)
            return value
        raise ValueError(f"must be {DEVICES}")

    @field_validator("precision", mode="before")
    @classmethod
    def _check_precision(cls, value: object) -> object:
        """int8 or fp32, in any case; anything else fails at start-up with the choices."""
        text = str(value).strip().lower()
        if text not in ("int8", "fp32"):
            raise ValueError(f"IMGSEARCH_PRECISION must be int8 or fp32, not {value!r}")
        return text

    @field_validator("labeller", mode="before")
    @classmethod
    def _check_labeller(cls, value: object) -> object:
        """lite2, lite0+lite2 or own, in any case; anything else fails at start-up with the choices."""
        text = str(value).strip().lower()
        if text not in LABELLER_CHOICES:
            raise ValueError(f"IMGSEARCH_LABELLER must be {', '.join(LABELLER_CHOICES)}, not {value!r}")
        return text

    @field_validator("max_upload_mb")
    @classmethod
    def _check_upload(cls, value: float) -> float:
        """An upload limit must be positive."""
        if value <= 0:
            raise ValueError("must be a positive number of megabytes")
        return value

    @field_validator("max_image_pixels", "max_collection_pixels")
    @classmethod
    def _check_pixels(cls, value: int) -> int:
        """A pixel limit must allow at least a small image."""
        if value < 64 * 64:
            raise ValueError("must be at least 4096 pixels")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Allow a comma-separated list as well as JSON."""
        if isinstance(value, str) and not value.strip().startswith("["):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_key", "read_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        """An empty or blank key is no key (admin disabled; reading open)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def search_options(self) -> SearchOptions:
        """The vector-search part of the settings."""
        return SearchOptions(
            backend=self.vector_backend,
            ann_threshold=self.ann_threshold,
            nprobe=self.ann_nprobe,
            ef_search=self.ann_ef_search,
            milvus_uri=self.milvus_uri,
            milvus_collection=self.milvus_collection,
        )

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


def _check_accelerator(device: str) -> None:
    """Raise ValueError when this machine lacks the requested accelerator (torch is imported only here)."""
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("mps (Apple GPU) is not available on this machine; use auto or cpu")
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"CUDA is not available on this machine (torch {torch.__version__} sees no GPU); use auto or cpu"
        )
    count = torch.cuda.device_count()
    if ":" in device and int(device.split(":")[1]) >= count:
        raise ValueError(f"this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")


EXPECTED = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "int_type": "expected a whole number",
    "bool_parsing": "expected true or false",
    "path_type": "expected a path",
}


def _variable(field: str) -> str:
    """The environment variable of a settings field."""
    return f"IMGSEARCH_{field.upper()}"


def describe_error(error: ErrorDetails) -> str:
    """One clause for one validation error: the variable, its value and what it should be."""
    variable = _variable(str(error["loc"][0])) if error["loc"] else "settings"
    reason = EXPECTED.get(error["type"]) or error["msg"].removeprefix("Value error, ").removeprefix("Input ")
    if reason[1:2].islower():  # "Field required" → "field required", but CUDA stays CUDA
        reason = reason[:1].lower() + reason[1:]
    if variable in reason:
        return reason
    value = error.get("input")
    shown = f"={value!r}" if isinstance(value, str | int | float) else ""
    return f"{variable}{shown} is not valid: {reason}"


def load_settings(**values: Any) -> Settings:
    """Settings from the environment (and `values`); one-line BadSetting naming the variable otherwise."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise BadSetting("; ".join(describe_error(error) for error in exc.errors())) from None
    except SourceError as exc:  # a list or dict variable that is not valid JSON
        found = re.search(r'field "(\w+)"', str(exc))
        variable = _variable(found.group(1)) if found else "an IMGSEARCH_ variable"
        raise BadSetting(
            f"{variable} cannot be read: expected a JSON value or a comma-separated list"
        ) from None
