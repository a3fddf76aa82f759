"""Service and build settings, read once from `IMGSEARCH_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.dedup import DEFAULT_THRESHOLD as DEFAULT_DEDUP_THRESHOLD
from app.vectors import Backend, SearchOptions

Profile = Literal["packaged", "seed", "clip"]
Precision = Literal["int8", "fp32"]


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
    max_image_pixels: int = 50_000_000
    cors_origins: list[str] = Field(default_factory=list)
    max_query_chars: int = 1000
    describe_max_new_tokens: int = 20
    query_cache_size: int = 1024
    api_key: SecretStr | None = Field(
        default=None, description="Key for the admin endpoints (header X-API-Key); unset: admin disabled."
    )
    dedup_threshold: float = Field(
        default=DEFAULT_DEDUP_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Visual cosine at which results collapse into one (app/dedup.py); 0 turns it off.",
    )
    vector_backend: Backend = Field(
        default="matrix", description="matrix: the index's own vectors (exact or HNSW); milvus: a store."
    )
    ann_threshold: int = Field(
        default=100_000, ge=0, description="From this many vectors the matrix backend uses the HNSW graph."
    )
    ann_ef_search: int = Field(default=512, ge=1, le=4096, description="HNSW search breadth.")
    milvus_uri: str | None = Field(
        default=None, description="Milvus Lite file path or http(s) URI of a Milvus server (backend milvus)."
    )
    milvus_collection: str = "images"
    precision: Precision = Field(
        default="int8",
        description="CPU image encoder: int8 (quantized once, cached) or fp32; accelerators keep float16.",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        """Accept auto, cpu, cuda and cuda:N only."""
        value = value.strip().lower()
        if value in {"auto", "cpu", "cuda", "mps"} or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError(f"IMGSEARCH_DEVICE must be auto, cpu, cuda or cuda:N, not {value!r}")

    @field_validator("precision", mode="before")
    @classmethod
    def _check_precision(cls, value: object) -> object:
        """int8 or fp32, in any case; anything else fails at start-up with the choices."""
        text = str(value).strip().lower()
        if text not in ("int8", "fp32"):
            raise ValueError(f"IMGSEARCH_PRECISION must be int8 or fp32, not {value!r}")
        return text

    @field_validator("max_upload_mb")
    @classmethod
    def _check_upload(cls, value: float) -> float:
        """An upload limit must be positive."""
        if value <= 0:
            raise ValueError("IMGSEARCH_MAX_UPLOAD_MB must be positive")
        return value

    @field_validator("max_image_pixels")
    @classmethod
    def _check_pixels(cls, value: int) -> int:
        """A pixel limit must allow at least a small image."""
        if value < 64 * 64:
            raise ValueError("IMGSEARCH_MAX_IMAGE_PIXELS must be at least 4096")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Allow a comma-separated list as well as JSON."""
        if isinstance(value, str) and not value.strip().startswith("["):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        """An empty or blank IMGSEARCH_API_KEY leaves the admin endpoints disabled."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def search_options(self) -> SearchOptions:
        """The vector-search part of the settings."""
        return SearchOptions(
            backend=self.vector_backend,
            ann_threshold=self.ann_threshold,
            ef_search=self.ann_ef_search,
            milvus_uri=self.milvus_uri,
            milvus_collection=self.milvus_collection,
        )

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)
