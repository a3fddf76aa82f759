"""Service assembly: an opened index + loaded models → a SearchService (for the server and the CLI).

The server (`app.api.runtime`) and the command line build the service the same way, through here:
open the index, load the profile it was built with, build the encode pipeline the index's bridge and
PCA call for, check that the models fit, and hand the service its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.bridge import label_vectors
from app.errors import IndexMismatch
from app.index import Index
from app.pipeline import Models, Pipeline
from app.registry import make_bridge, prepare
from app.service import SearchService
from app.settings import Settings

ServiceFactory = Callable[[Settings], SearchService]
Reloader = Callable[[Settings, SearchService], SearchService]


def pipeline_for(
    index: Index, models: Models, cache_dir: Path | None, query_cache_size: int = 1024
) -> Pipeline:
    """The encode path an index was built with (its bridge, PCA and flip) over these models."""
    bridge = make_bridge(models, index.meta.bridge, cache_dir)
    return Pipeline(models, bridge, index.pca, flip=index.meta.flip, cache_size=query_cache_size)


def service_over(
    index: Index,
    models: Models,
    cache_dir: Path | None,
    *,
    max_pixels: int = 50_000_000,
    max_new_tokens: int = 24,
    query_cache_size: int = 1024,
    dedup_threshold: float = 0.0,
) -> SearchService:
    """A service over an opened index and loaded models; the index is closed when they do not match."""
    try:
        pipeline = pipeline_for(index, models, cache_dir, query_cache_size)
        service = SearchService(
            index,
            pipeline,
            max_pixels=max_pixels,
            max_new_tokens=max_new_tokens,
            dedup_threshold=dedup_threshold,
        )
    except BaseException:
        index.close()
        raise
    describer = service.describer
    if describer.imagenet:  # the text vote: the concepts' names in the text encoder's space (cached)
        describer.concept_vectors = label_vectors(models.text, describer.concept_names(), ("{}",), cache_dir)
    return service


def open_service(settings: Settings, index: Index, models: Models) -> SearchService:
    """A service over an opened index and loaded models, configured by the settings."""
    return service_over(
        index,
        models,
        settings.cache_dir,
        max_pixels=settings.max_image_pixels,
        max_new_tokens=settings.describe_max_new_tokens,
        query_cache_size=settings.query_cache_size,
        dedup_threshold=settings.dedup_threshold,
    )


def profile_for(settings: Settings, index: Index) -> str:
    """The index's profile; IndexMismatch naming both when IMGSEARCH_PROFILE asks for another one."""
    if settings.profile and settings.profile != index.profile:
        raise IndexMismatch(
            f"the index at {index.root} was built with profile {index.profile!r} and IMGSEARCH_PROFILE "
            f"asks for {settings.profile!r}: unset IMGSEARCH_PROFILE, or rebuild the index with "
            f"--profile {settings.profile}"
        )
    return index.profile


def load_service(settings: Settings, with_lm: bool = True, lm_in_background: bool = False) -> SearchService:
    """Open the index, check the profile asked for, load its models on the configured device, check they
    match (no model loads for an index of another profile)."""
    index = Index(settings.index_dir, settings.search_options())
    try:
        profile = profile_for(settings, index)
        models = prepare(settings, profile, with_lm=with_lm, lm_in_background=lm_in_background)
    except BaseException:
        index.close()
        raise
    return open_service(settings, index, models)


def serve_service(settings: Settings) -> SearchService:
    """The server's load: ready to search while the language model still loads (/describe: 503 until)."""
    return load_service(settings, lm_in_background=True)


def reload_service(settings: Settings, current: SearchService) -> SearchService:
    """The index now on disk with the models already loaded (models are never reloaded)."""
    index = Index(settings.index_dir, settings.search_options())
    return open_service(settings, index, current.models)
