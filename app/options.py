"""Option types and defaults that settings and the stages share; imports nothing from the project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["matrix", "milvus"]
Mode = Literal["hybrid", "semantic", "lexical"]  # how a text search ranks (app/service.py)
Sort = Literal["relevance", "newest", "oldest"]  # the order of a search's results (app/service.py)
# A date sort keeps the results scoring at least this (the 0–1 relevance scale of app/fusion.py):
# the cut with the best mean F1 of what it keeps for the generic class-word queries, tune half,
# semantic and hybrid over mixed and real names (docs/relevance.md, "Sort and cutoff").
DATE_SORT_MIN_SCORE = 0.3
MAX_QUERY_CHARS = 1000  # the API's ceiling on a query's length; IMGSEARCH_MAX_QUERY_CHARS may lower it
# Visual cosine at which results fold into one; measured and explained in app/ranking.py.
DEFAULT_DEDUP_THRESHOLD = 0.97


@dataclass(frozen=True)
class SearchOptions:
    """How the service searches an index's text-space vectors."""

    backend: Backend = "matrix"
    ann_threshold: int = 100_000  # matrix backend: use the stored ANN graph from this many vectors on
    nprobe: int = 96  # inverted-file cells probed per query (filtered: nprobe / √share; app/vectors.py)
    ef_search: int = 512  # an older index's HNSW graph: breadth at query time
    milvus_uri: str | None = None  # milvus backend: a file path (Milvus Lite) or an http(s) URI
    milvus_collection: str = "images"
