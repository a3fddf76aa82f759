"""A large index for load and memory benches: a real small index's rows first, then synthetic rows."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from app import index as ix
from app.layout import ANN_FILE
from app.vectors import build_ann
from bench.synthetic import stats_dim, synthetic

BLOCK = 100_000  # synthetic feature rows made at a time


def scaled_index(
    real: Path, target: Path, count: int, thumbnails: bool = True, features: bool = True, ann: bool = False
) -> Path:
    """Copy `real` (a built index) to `target` grown to `count` rows; synthetic rows reuse its images."""
    source = ix.Index(real)
    try:
        records = source.records(list(range(source.count)))
        vectors = np.asarray(source.vectors, dtype=np.float32)
        feats = np.asarray(source.features, dtype=np.float32)
        meta = source.meta
        real = source.path  # the generation served, for its thumbnails and PCA
    finally:
        source.close()
    shutil.rmtree(target, ignore_errors=True)
    (target / ix.THUMBNAILS).mkdir(parents=True)
    extra = count - len(records)
    kind = "fitted" if vectors.shape[1] == stats_dim() else "bridge"  # our geometry where it is known
    matrix = np.concatenate([vectors, synthetic(extra, vectors.shape[1], kind, seed=count)])
    np.save(target / ix.VECTORS, matrix.astype(np.float16))
    if features:  # written a block at a time: 1 M rows of 1280 float32 would take 5 GB at once
        stored = np.lib.format.open_memmap(
            target / ix.FEATURES, mode="w+", dtype=np.float16, shape=(count, feats.shape[1])
        )
        stored[: len(feats)] = feats
        for first in range(len(feats), count, BLOCK):
            size = min(BLOCK, count - first)
            stored[first : first + size] = synthetic(size, feats.shape[1], "bridge", seed=count + first)
        stored.flush()
        del stored
    rows: list[ix.ImageRecord] = []
    for row in range(count):
        like = records[row % len(records)]
        image_id = like.id if row < len(records) else f"{row:016x}"
        rows.append(
            ix.ImageRecord(
                row, image_id, like.source, like.sha256, like.width, like.height, like.format, like.labels
            )
        )
        if thumbnails:
            os.link(real / ix.THUMBNAILS / f"{like.id}.jpg", target / ix.THUMBNAILS / f"{image_id}.jpg")
    ix.write_manifest(target / ix.MANIFEST, rows)
    if (real / ix.PCA_FILE).exists():
        shutil.copy(real / ix.PCA_FILE, target / ix.PCA_FILE)
    if ann:
        build_ann(np.load(target / ix.VECTORS, mmap_mode="r"), target / ANN_FILE)
    meta = replace(meta, count=count, source=f"{meta.source} + {extra} synthetic rows")
    (target / ix.META).write_text(json.dumps(meta.to_json(), indent=2))
    return target
