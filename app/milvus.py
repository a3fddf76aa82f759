"""Vectors in Milvus: export an index's vectors into a collection, and search them from the service.

`IMGSEARCH_MILVUS_URI` (or `--milvus-uri`) is a path ending in `.db` for Milvus Lite (embedded in
this process; one process at a time per file) or `http(s)://host:port` for Milvus standalone or a
Milvus cluster. Each build exports into its own collection `<name>_<stamp>` (stamp: the first 12
hex digits of the build id in the index's meta.json) and moves the alias `<name>` onto it, keeping
the previous collection so that a service still on the previous index keeps answering until it
reloads. The service opens the collection of exactly the index it serves, asks Milvus for a pool
of candidates and re-ranks them exactly against the index's own matrix (`rank_exact`): rows and
float32 cosine scores are those of the matrix backend.

Export an index that is already built:
    python -m app.milvus --index-dir data/index --uri data/milvus.db
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ImgSearchError, IndexUnavailable
from app.vectors import ExactSearcher, SearchOptions, rank_exact

log = logging.getLogger(__name__)

FLAT_MAX = 100_000  # auto index type: FLAT (exact) below this many vectors, HNSW from here on
INDEX_TYPES = ("auto", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8")
HNSW_PARAMS = {"M": 32, "efConstruction": 200}  # as app.vectors.build_ann's defaults
INSERT_CHUNK = 10_000  # rows per insert call (well under gRPC's message limit at 128-d)
MAX_TOPK = 16_384  # Milvus's limit on one search's results
SOURCE_CHARS = 16_000  # VARCHAR max_length is 65535 bytes
STAMP_PROPERTY = "imgsearch.stamp"
TYPE_PROPERTY = "imgsearch.index_type"
NLIST_PROPERTY = "imgsearch.nlist"

_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}  # Milvus Lite path → open clients in this process


def _pymilvus() -> Any:
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
    """The build's fingerprint: its build id, or the sha256 of meta.json for older builds (12 hex digits)."""
    from app.index import META, live_path  # app.index imports this module's neighbours: import late
    from app.meta import IndexMeta

    try:
        text = (live_path(index_path) / META).read_bytes()
        build_id = IndexMeta.from_json(json.loads(text)).build_id
    except OSError as exc:
        raise IndexUnavailable(f"no index at {index_path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise IndexUnavailable(f"index at {index_path} has an unreadable {META}: {exc}") from exc
    return str(build_id)[:12] if build_id else hashlib.sha256(text).hexdigest()[:12]


def collection_name(name: str, stamp: str) -> str:
    """The collection that holds one build's vectors."""
    return f"{name}_{stamp}"


def choose_index_type(count: int, wanted: str = "auto") -> str:
    """FLAT for small collections, HNSW for large ones, unless a type is asked for."""
    if wanted not in INDEX_TYPES:
        raise ValueError(f"unknown Milvus index type {wanted!r}; choose one of {', '.join(INDEX_TYPES)}")
    if wanted != "auto":
        return wanted
    return "FLAT" if count < FLAT_MAX else "HNSW"


def connect(uri: str) -> Any:
    """A MilvusClient for the URI; IndexUnavailable with the reason when it cannot be opened."""
    pymilvus = _pymilvus()
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


def _schema(pymilvus: Any, client: Any, dim: int) -> Any:
    """id (the vector row), vector, image id and source."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    # FLOAT_VECTOR: the only dense type Milvus Lite stores (FLOAT16_VECTOR is server-only).
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("image_id", pymilvus.DataType.VARCHAR, max_length=16)
    schema.add_field("source", pymilvus.DataType.VARCHAR, max_length=65_535)
    return schema


def export_index(index_path: Path, uri: str, name: str = "images", index_type: str = "auto") -> str:
    """Write the index's vectors (id = row, vector, image id, source) to Milvus; returns the collection."""
    from app.index import Index

    pymilvus = _pymilvus()
    started = time.perf_counter()
    index = Index(index_path)
    try:
        count, dim = index.vectors.shape
        kind = choose_index_type(count, index_type)
        nlist = max(1, min(65_536, int(4 * np.sqrt(count))))
        stamp = stamp_of(index_path)
        target = collection_name(name, stamp)
        client = connect(uri)
        try:
            if client.has_collection(target):  # the same build exported again
                if _alias_target(client, name) == target:
                    client.drop_alias(name)
                client.drop_collection(target)
            client.create_collection(
                target,
                schema=_schema(pymilvus, client, dim),
                properties={STAMP_PROPERTY: stamp, TYPE_PROPERTY: kind, NLIST_PROPERTY: str(nlist)},
            )
            for first in range(0, count, INSERT_CHUNK):
                last = min(count, first + INSERT_CHUNK)
                vectors = np.asarray(index.vectors[first:last], dtype=np.float32)
                records = index.records(list(range(first, last)))
                client.insert(
                    target,
                    [
                        {"id": r.row, "vector": v, "image_id": r.id, "source": r.source[:SOURCE_CHARS]}
                        for r, v in zip(records, vectors, strict=True)
                    ],
                )
            client.flush(target)
            index_params = client.prepare_index_params()
            params = HNSW_PARAMS if kind == "HNSW" else {"nlist": nlist} if kind.startswith("IVF") else {}
            index_params.add_index(field_name="vector", index_type=kind, metric_type="IP", params=params)
            # sync=False, then poll: pymilvus's own wait asks for a timestamp Milvus Lite does not serve.
            client.create_index(target, index_params, sync=False)
            _wait_for_index(client, target, count)
            client.load_collection(target)
            _point_alias(client, name, target)
        except pymilvus.MilvusException as exc:
            raise IndexUnavailable(f"Milvus export to {uri} failed: {exc.message}") from exc
        finally:
            disconnect(client, uri)
    finally:
        index.close()
    log.info(
        "exported %d vectors to Milvus %s collection %s (%s, alias %s) in %.1fs",
        count,
        uri,
        target,
        kind,
        name,
        time.perf_counter() - started,
    )
    return target


def _wait_for_index(client: Any, collection: str, count: int) -> None:
    """Poll until the vector index covers every row (a log line a minute while it builds)."""
    started = last_log = time.monotonic()
    while True:
        described = client.describe_index(collection, "vector")
        if described.get("state") == "Finished" or int(described.get("indexed_rows", 0)) >= count:
            return
        if described.get("state") == "Failed":
            raise IndexUnavailable(f"Milvus could not build the index of {collection}: {described}")
        if time.monotonic() - last_log >= 60:
            last_log = time.monotonic()
            log.info(
                "Milvus is indexing %s: %s of %d rows after %.0fs",
                collection,
                described.get("indexed_rows"),
                count,
                last_log - started,
            )
        time.sleep(0.5)


def _alias_target(client: Any, name: str) -> str | None:
    """The collection alias `name` points to, or None when there is no such alias."""
    if name not in client.list_aliases().get("aliases", []):
        return None
    return str(client.describe_alias(name)["collection_name"])


def _point_alias(client: Any, name: str, target: str) -> None:
    """Move alias `name` onto `target`; drop this name's older builds except the one it pointed to."""
    previous = _alias_target(client, name)
    if previous is None:
        client.create_alias(target, name)
    else:
        client.alter_alias(target, name)
    pattern = re.compile(rf"^{re.escape(name)}_[0-9a-f]{{12}}$")
    for other in client.list_collections():
        if pattern.match(other) and other not in {target, previous}:
            log.info("dropping Milvus collection %s (an older build)", other)
            client.drop_collection(other)


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
        pymilvus = _pymilvus()
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

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k (row, cosine): a pool of 2k + 32 candidates from Milvus, re-ranked in float32."""
        n = self.matrix.shape[0]
        k = min(k, n)
        if k <= 0:
            return []
        if k > MAX_TOPK:  # deeper than one Milvus search can go: scan the matrix
            return self._exact.search(query, k)
        limit = min(n, MAX_TOPK, 2 * k + 32)
        found = self._client.search(
            self.collection,
            data=[np.asarray(query, dtype=np.float32)],
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


def open_milvus(index_path: Path, matrix: np.ndarray, options: SearchOptions) -> MilvusSearcher:
    """The `milvus` entry of app.vectors.BACKENDS."""
    return MilvusSearcher(index_path, matrix, options)


def main(argv: list[str] | None = None) -> int:
    """Export a built index to Milvus; exit status 1 with one line on failure."""
    parser = argparse.ArgumentParser(description="Export an index's vectors to a Milvus collection.")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--uri", required=True, help="a .db file (Milvus Lite) or http(s)://host:port")
    parser.add_argument("--collection", default="images", help="collection name (an alias to the build's)")
    parser.add_argument("--index-type", choices=INDEX_TYPES, default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        target = export_index(args.index_dir, args.uri, args.collection, args.index_type)
    except (ImgSearchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {args.index_dir} to {args.uri} collection {target} (alias {args.collection})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
