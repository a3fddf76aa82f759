"""Stage 5b, vector store: search an index's vectors in the Milvus collection exported from it.

`IMGSEARCH_MILVUS_URI` is a path ending in `.db` for Milvus Lite (embedded in this process; one
process at a time per file) or `http(s)://host:port` for Milvus standalone or a Milvus cluster.
The service opens the collection of exactly the index it serves (`<name>_<stamp>`, stamp: the first
12 hex digits of the build id in the index's meta.json), asks Milvus for a pool of candidates and
re-ranks them exactly against the index's own matrix (`rank_exact`): rows and float32 cosine scores
are those of the matrix backend. The export (build side) is app/milvus.py.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import IndexUnavailable
from app.layout import META, live_path
from app.options import SearchOptions
from app.vectors import SUBSET_EXACT, ExactSearcher, Hits, Rescan, SubsetScan, rank_exact

log = logging.getLogger(__name__)

MAX_TOPK = 16_384  # Milvus's limit on one search's results
MAX_FILTER_ROWS = 100_000  # a filter of more rows than this is searched exactly over the index's matrix
STAMP_PROPERTY = "imgsearch.stamp"
TYPE_PROPERTY = "imgsearch.index_type"
NLIST_PROPERTY = "imgsearch.nlist"

_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}  # Milvus Lite path → open clients in this process


def pymilvus_module() -> Any:
    """pymilvus, imported on first use (installed by the `scale` extra; it ships no type hints)."""
    try:
        return importlib.import_module("pymilvus")
    except ImportError as exc:
        raise IndexUnavailable(
            "the milvus vector backend needs pymilvus and milvus-lite: pip install 'imgsearch[scale]'"
        ) from exc


def is_lite(uri: str) -> bool:
    """True for a Milvus Lite file, False for a server URI; IndexUnavailable for anything else."""
    if re.match(r"^(https?|tcp)://", uri):
        return False
    if uri.endswith(".db"):
        return True
    raise IndexUnavailable(
        f"Milvus URI {uri!r}: use a file path ending in .db (Milvus Lite) or http(s)://host:port (a server)"
    )


def stamp_of(index_path: Path) -> str:
    """The build's fingerprint: its build id, or the sha256 of meta.json for older builds (12 hex digits).

    `index_path` is a generation's folder, or an index folder whose `current` names the one served.
    """
    try:
        text = (live_path(index_path) / META).read_bytes()
    except OSError as exc:
        raise IndexUnavailable(f"no index at {index_path}: {exc.strerror or exc}") from exc
    build_id = json.loads(text).get("build_id")
    return str(build_id)[:12] if build_id else hashlib.sha256(text).hexdigest()[:12]


def collection_name(name: str, stamp: str) -> str:
    """The collection that holds one build's vectors."""
    return f"{name}_{stamp}"


def connect(uri: str) -> Any:
    """A MilvusClient for the URI; IndexUnavailable with the reason when it cannot be opened."""
    pymilvus = pymilvus_module()
    lite = is_lite(uri)
    if lite:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = pymilvus.MilvusClient(uri=uri)
    except pymilvus.MilvusException as exc:
        hint = (
            " (Milvus Lite lets one process at a time open a .db file: is a build or a service using it?)"
            if lite
            else ""
        )
        raise IndexUnavailable(f"cannot open Milvus at {uri}: {exc.message}{hint}") from exc
    if lite:
        with _lite_lock:
            _lite_users[os.path.abspath(uri)] = _lite_users.get(os.path.abspath(uri), 0) + 1
    return client


def disconnect(client: Any, uri: str) -> None:
    """Close the client; stop Milvus Lite's in-process server when its last client here closes."""
    client.close()
    if not is_lite(uri):
        return
    path = os.path.abspath(uri)
    with _lite_lock:
        _lite_users[path] -= 1
        last = _lite_users[path] == 0
        if last:
            del _lite_users[path]
    if last:
        importlib.import_module("milvus_lite.server_manager").server_manager_instance.release_server(path)


class MilvusSearcher:
    """Candidates from a Milvus collection, ranked exactly against the index's matrix."""

    kind = "milvus"

    def __init__(self, index_path: Path, matrix: np.ndarray, options: SearchOptions) -> None:
        """Open the collection exported from exactly this index, or IndexUnavailable saying what to do."""
        if not options.milvus_uri:
            raise IndexUnavailable("IMGSEARCH_VECTOR_BACKEND=milvus needs IMGSEARCH_MILVUS_URI")
        self.uri = options.milvus_uri
        self.matrix = matrix
        export = f"python -m app.milvus --index-dir {index_path} --uri {self.uri}"
        if options.milvus_collection != "images":
            export += f" --collection {options.milvus_collection}"
        if is_lite(self.uri) and not Path(self.uri).exists():
            raise IndexUnavailable(f"no Milvus Lite database at {self.uri}; export the index: {export}")
        self.collection = collection_name(options.milvus_collection, stamp_of(index_path))
        pymilvus = pymilvus_module()
        self._client: Any = connect(self.uri)
        try:
            if not self._client.has_collection(self.collection):
                raise IndexUnavailable(
                    f"Milvus at {self.uri} has no collection {self.collection} for the index at "
                    f"{index_path} (built after the last export?); export it: {export}"
                )
            rows = int(self._client.get_collection_stats(self.collection)["row_count"])
            if rows != matrix.shape[0]:
                raise IndexUnavailable(
                    f"Milvus collection {self.collection} holds {rows} vectors but the index has "
                    f"{matrix.shape[0]}; export it again: {export}"
                )
            properties = self._client.describe_collection(self.collection).get("properties", {})
            self.index_type = str(properties.get(TYPE_PROPERTY, "FLAT"))
            self._nlist = int(properties.get(NLIST_PROPERTY, 1))
            self._client.load_collection(self.collection)
        except pymilvus.MilvusException as exc:
            self.close()
            raise IndexUnavailable(f"cannot use Milvus collection {self.collection}: {exc.message}") from exc
        except IndexUnavailable:
            self.close()
            raise
        self._ef = options.ef_search
        self._exact = ExactSearcher(matrix)
        log.info("searching Milvus %s collection %s (%s)", self.uri, self.collection, self.index_type)

    def _params(self, limit: int) -> dict[str, Any]:
        """Search breadth for the collection's index type."""
        if self.index_type == "HNSW":
            return {"ef": max(self._ef, limit)}
        if self.index_type.startswith("IVF"):
            return {"nprobe": min(self._nlist, 64)}
        return {}

    def scan(self, query: np.ndarray, rows: np.ndarray | None = None) -> Rescan | SubsetScan:
        """The collection's ranking (of `rows` only, as a filter expression on the row ids, when given).

        A filter of at most `SUBSET_EXACT` rows, or of more than `MAX_FILTER_ROWS` (an expression
        too long to send), is scored exactly over the index's own matrix instead.
        """
        if rows is None:
            return Rescan(self.search, query)
        if len(rows) <= SUBSET_EXACT or len(rows) > MAX_FILTER_ROWS:
            return SubsetScan(self.matrix, query, rows)
        return Rescan(lambda q, k: self._search(q, k, rows), query)

    def search(self, query: np.ndarray, k: int) -> Hits:
        """Top-k (row, cosine): a pool of 2k + 32 candidates from Milvus, re-ranked in float32."""
        return self._search(query, k, None)

    def _search(self, query: np.ndarray, k: int, among: np.ndarray | None) -> Hits:
        """Top-k among the rows `among` (every row when None)."""
        n = self.matrix.shape[0] if among is None else len(among)
        k = min(k, n)
        if k <= 0:
            return []
        if k > MAX_TOPK:  # deeper than one Milvus search can go: scan the matrix
            return self._exact.search(query, k) if among is None else rank_exact(self.matrix, query, among, k)
        expression = "" if among is None else f"id in [{', '.join(str(row) for row in among.tolist())}]"
        limit = min(n, MAX_TOPK, 2 * k + 32)
        found = self._client.search(
            self.collection,
            data=[np.asarray(query, dtype=np.float32)],
            filter=expression,
            limit=limit,
            output_fields=["id"],
            search_params={"metric_type": "IP", "params": self._params(limit)},
        )
        rows = np.fromiter((hit["id"] for hit in found[0]), dtype=np.int64)
        return rank_exact(self.matrix, query, rows, k)

    def close(self) -> None:
        """Release the connection (and Milvus Lite's server with the last one); safe to call twice."""
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            disconnect(client, self.uri)
