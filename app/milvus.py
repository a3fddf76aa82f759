"""Build side of the Milvus backend: export an index's vectors into a collection.

The service searches it through app/milvus_search.py.

`--uri` is a path ending in `.db` for Milvus Lite or `http(s)://host:port` for a Milvus server.
Each build exports into its own collection `<name>_<stamp>` (stamp: the first 12 hex digits of the
build id in the index's meta.json) and moves the alias `<name>` onto it, keeping the previous
collection so that a service still on the previous index keeps answering until it reloads.

Export an index that is already built:
    python -m app.milvus --index-dir data/index --uri data/milvus.db
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ImgSearchError, IndexUnavailable
from app.index import Index
from app.milvus_search import (
    NLIST_PROPERTY,
    STAMP_PROPERTY,
    TYPE_PROPERTY,
    collection_name,
    connect,
    disconnect,
    pymilvus_module,
    stamp_of,
)

log = logging.getLogger(__name__)

FLAT_MAX = 100_000  # auto index type: FLAT (exact) below this many vectors, HNSW from here on
INDEX_TYPES = ("auto", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8")
HNSW_PARAMS = {"M": 32, "efConstruction": 200}  # as app.vectors.build_hnsw's defaults
INSERT_CHUNK = 10_000  # rows per insert call (well under gRPC's message limit at 128-d)
SOURCE_CHARS = 16_000  # VARCHAR max_length is 65535 bytes


def choose_index_type(count: int, wanted: str = "auto") -> str:
    """FLAT for small collections, HNSW for large ones, unless a type is asked for."""
    if wanted not in INDEX_TYPES:
        raise ValueError(f"unknown Milvus index type {wanted!r}; choose one of {', '.join(INDEX_TYPES)}")
    if wanted != "auto":
        return wanted
    return "FLAT" if count < FLAT_MAX else "HNSW"


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
    pymilvus = pymilvus_module()
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
