"""Offline build: read (parallel decode) → encode (batched) → write (atomic swap into place)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app import index as ix
from app.bridge import BridgeParams
from app.errors import ImgSearchError
from app.pca import Pca
from app.pipeline import Pipeline
from app.preprocessing import Preprocessor, decode, image_format, thumbnail
from app.sources import Source

log = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    """Parameters of one build, recorded in meta.json."""

    pca_dim: int = 128
    pca_centred: bool = False
    batch_size: int = 32
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    label_k: int = 5
    max_pixels: int = 50_000_000


@dataclass
class BuildReport:
    """What a build did: counts, skipped files with reasons, seconds per stage."""

    indexed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "indexed": self.indexed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


class _Decoded(Dataset[dict[str, Any]]):
    """Worker-side read: bytes → sha256 → decoded picture → encoder tensor and thumbnail."""

    def __init__(self, source: Source, preprocess: Preprocessor, max_pixels: int) -> None:
        self.source = source
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.source[i]
        try:
            raw = item.data if isinstance(item.data, bytes) else item.data.read_bytes()
        except OSError as exc:
            return {"ok": False, "source": item.source, "error": f"cannot read file: {exc.strerror or exc}"}
        try:
            image = decode(raw, self.max_pixels)
            return {
                "ok": True,
                "source": item.source,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "width": image.width,
                "height": image.height,
                "format": image_format(raw),
                "pixels": self.preprocess(image),
                "thumbnail": thumbnail(image),
                "original": raw if self.source.stores_originals else None,
            }
        except ImgSearchError as exc:
            return {"ok": False, "source": item.source, "error": str(exc)}


def _collate(batch: list[dict[str, Any]]) -> tuple[torch.Tensor | None, list[dict[str, Any]]]:
    """Stack the tensors of readable items; keep every item's metadata."""
    tensors = [entry.pop("pixels") for entry in batch if entry["ok"]]
    return (torch.stack(tensors) if tensors else None), batch


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace `target` with the finished `tmp` directory (rename; the old one is removed after)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def build_index(
    source: Source,
    index_dir: Path,
    pipeline: Pipeline,
    config: BuildConfig | None = None,
    bridge_params: BridgeParams | None = None,
    progress: bool = True,
) -> BuildReport:
    """Encode every image of `source` and write a complete index to `index_dir`."""
    config = config or BuildConfig()
    report = BuildReport()
    index_dir = index_dir.resolve()
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_dir.with_name(f".{index_dir.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ix.THUMBNAILS).mkdir(parents=True)
    if source.stores_originals:
        (tmp / ix.ORIGINALS).mkdir()
    saved_pca, pipeline.pca = pipeline.pca, None
    try:
        loader = DataLoader(
            _Decoded(source, pipeline.preprocess, config.max_pixels),
            batch_size=config.batch_size,
            num_workers=config.workers,
            collate_fn=_collate,
            persistent_workers=False,
        )
        vectors: list[np.ndarray] = []
        features: list[np.ndarray] = []
        records: list[ix.ImageRecord] = []
        seen: dict[str, str] = {}
        timings = {"read": 0.0, "encode": 0.0, "write": 0.0}
        started = time.perf_counter()
        mark = started
        for pixels, batch in tqdm(loader, desc="indexing", unit="batch", disable=not progress):
            now = time.perf_counter()
            timings["read"] += now - mark
            keep = [entry for entry in batch if entry["ok"]]
            for entry in batch:
                if not entry["ok"]:
                    report.skipped.append({"source": entry["source"], "reason": entry["error"]})
            if pixels is not None:
                encoded = pipeline.encode_pixels(pixels, config.label_k)
                after_encode = time.perf_counter()
                timings["encode"] += after_encode - now
                for position, entry in enumerate(keep):
                    image_id = ix.image_id(entry["sha256"])
                    if image_id in seen:
                        report.duplicates.append({"source": entry["source"], "same_as": seen[image_id]})
                        continue
                    seen[image_id] = entry["source"]
                    source_name = entry["source"]
                    if entry["original"] is not None:
                        suffix = f".{(entry['format'] or 'bin').lower()}"
                        source_name = f"{ix.ORIGINALS}/{image_id}{suffix}"
                        (tmp / source_name).write_bytes(entry["original"])
                    (tmp / ix.THUMBNAILS / f"{image_id}.jpg").write_bytes(entry["thumbnail"])
                    records.append(
                        ix.ImageRecord(
                            row=len(records),
                            id=image_id,
                            source=source_name,
                            sha256=entry["sha256"],
                            width=entry["width"],
                            height=entry["height"],
                            format=entry["format"],
                            labels=encoded.labels[position],
                        )
                    )
                    vectors.append(encoded.vectors[position])
                    features.append(encoded.features[position])
                timings["write"] += time.perf_counter() - after_encode
            mark = time.perf_counter()
        if not records:
            raise ImgSearchError(
                f"no readable images in {getattr(source, 'root', None) or 'the source'} "
                f"({len(report.skipped)} skipped); the existing index was left as it was"
            )
        write_started = time.perf_counter()
        matrix = np.stack(vectors).astype(np.float32)
        pca: Pca | None = None
        if config.pca_dim and matrix.shape[0] > config.pca_dim and config.pca_dim < matrix.shape[1]:
            pca = Pca.fit(matrix, config.pca_dim, centred=config.pca_centred)
            matrix = pca.transform(matrix)
            pca.save(tmp / ix.PCA_FILE)
        elif config.pca_dim:
            log.info("PCA skipped: %d images, %d dimensions ≤ --pca-dim %d", *matrix.shape, config.pca_dim)
        timings["pca"] = time.perf_counter() - write_started
        np.save(tmp / ix.VECTORS, matrix.astype(np.float16))
        np.save(tmp / ix.FEATURES, np.stack(features).astype(np.float16))
        ix.write_manifest(tmp / ix.MANIFEST, records)
        report.indexed = len(records)
        timings["write"] += time.perf_counter() - write_started - timings["pca"]
        timings["total"] = time.perf_counter() - started
        report.seconds = timings
        models = pipeline.models
        meta = {
            "format_version": ix.FORMAT_VERSION,
            "profile": models.profile,
            "models": models.ids(),
            "dims": {
                "vector": int(matrix.shape[1]),
                "text": pipeline.text_dim,
                "feature": int(features[0].shape[0]),
            },
            "count": len(records),
            "vector_dtype": "float16",
            "pca": {"dim": pca.dim, "centred": pca.centred} if pca else None,
            "bridge": (bridge_params or pipeline.bridge.params).to_json(),
            "identity_bridge": pipeline.bridge.identity,
            "flip": pipeline.flip,
            "collection_root": None if source.stores_originals else str(source.root),
            "source": getattr(source, "name", None) or str(source.root),
            "build": {"batch_size": config.batch_size, "workers": config.workers, "pca_dim": config.pca_dim},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / ix.REPORT).write_text(json.dumps(report.to_json(), indent=2))
        (tmp / ix.META).write_text(json.dumps(meta, indent=2))
        _swap_into_place(tmp, index_dir)
    finally:
        pipeline.pca = saved_pca
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "indexed %d images (%d skipped, %d duplicates) in %.1fs: %s",
        report.indexed,
        len(report.skipped),
        len(report.duplicates),
        report.seconds["total"],
        ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items() if k != "total"),
    )
    return report
