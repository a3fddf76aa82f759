"""meta.json: what a build writes, what older builds wrote, and how an update compares settings."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.errors import IndexUnavailable
from app.index import Index, live_path
from app.meta import Dims, IndexMeta, PcaInfo
from app.pipeline import Pipeline
from app.registry import make_bridge
from app.settings import Settings
from app.sources import FolderSource
from tests.fakes import FakeLabelledEncoder, fake_models

# meta.json exactly as the build of commit 1dd244e wrote it (identity_bridge, no precision).
WRITTEN_BY_1DD244E: dict[str, Any] = {
    "format_version": 1,
    "profile": "packaged",
    "models": {"image": "efficientnet-lite0", "text": "all-MiniLM-L6-v2", "lm": "smollm2"},
    "dims": {"vector": 128, "text": 384, "feature": 1280},
    "count": 160,
    "vector_dtype": "float16",
    "pca": {"dim": 128, "centred": True},
    "bridge": BridgeParams().to_json(),
    "identity_bridge": False,
    "flip": True,
    "collection_root": "/data/stamps",
    "source": "/data/stamps",
    "build": {
        "batch_size": 32,
        "workers": 2,
        "pca_dim": 128,
        "pca_centred": True,
        "label_k": 5,
        "ann": False,
        "update": False,
        "engine": "local",
    },
    "created_at": "2026-11-27T08:28:19+00:00",
    "build_id": "5f0c1e2d3b4a59687766554433221100",
}


def test_meta_written_by_the_previous_version_loads_and_round_trips() -> None:
    """An older meta.json reads into every field; identity_bridge is ignored; precision is fp32."""
    meta = IndexMeta.from_json(WRITTEN_BY_1DD244E)
    assert (meta.profile, meta.count, meta.precision) == ("packaged", 160, "fp32")
    assert meta.dims == Dims(vector=128, text=384, feature=1280)
    assert meta.pca == PcaInfo(dim=128, centred=True)
    assert meta.bridge == BridgeParams() and meta.build.workers == 2 and meta.build_id is not None
    written = meta.to_json()
    assert "identity_bridge" not in written and written["precision"] == {"image": "fp32"}
    assert set(written) == set(WRITTEN_BY_1DD244E) - {"identity_bridge"} | {"precision"}
    assert IndexMeta.from_json(json.loads(json.dumps(written))) == meta


def test_keys_older_builds_did_not_record_take_the_values_they_implied() -> None:
    """No flip, label count, centring or newer bridge keys: the defaults of the builds that omitted them."""
    old = json.loads(json.dumps(WRITTEN_BY_1DD244E))
    del old["flip"], old["build"]["label_k"], old["build"]["pca_centred"], old["build_id"]
    old["bridge"] = {"kind": "conse", "top_t": 0, "temperature": 1.0}
    meta = IndexMeta.from_json(old)
    assert meta.flip is True and meta.build.label_k == 5 and meta.build_id is None
    assert meta.build.pca_centred is True  # from the pca entry, as the build that wrote it applied it
    assert (meta.bridge.names, meta.bridge.definition_weight, meta.bridge.references) == ("short", 0.0, "")


def test_a_meta_without_required_keys_is_a_value_error() -> None:
    """A meta.json missing its profile is malformed, named as such (the index reports it unreadable)."""
    broken = {k: v for k, v in WRITTEN_BY_1DD244E.items() if k != "profile"}
    with pytest.raises(ValueError, match="profile"):
        IndexMeta.from_json(broken)


def test_settings_differences_name_each_key_and_the_bridge_parameter() -> None:
    """One comparison: `key: index X, now Y`, and `bridge.<param>` inside the bridge."""
    built = IndexMeta.from_json(WRITTEN_BY_1DD244E).build_settings()
    assert built.differences(built) == []
    now = replace(built, label_count=3, bridge=replace(built.bridge, top_t=10), flip=False)
    assert built.differences(now) == [
        "bridge.top_t: index 0, now 10",
        "flip: index True, now False",
        "label count: index 5, now 3",
    ]


def test_an_index_with_a_previous_version_meta_opens_and_updates_in_place(
    pipeline: Pipeline, gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rewritten in the 1dd244e shape, the meta still opens, and --update reuses every image."""
    target = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(FolderSource(gallery), target, pipeline, config, progress=False)
    path = live_path(target) / "meta.json"
    current = json.loads(path.read_text())
    old = {key: current[key] for key in WRITTEN_BY_1DD244E if key in current}
    old["identity_bridge"] = pipeline.bridge.identity
    path.write_text(json.dumps(old, indent=2))
    index = Index(target)
    assert index.meta.precision == "fp32" and index.meta.count == index.count == 3
    index.close()
    caplog.set_level(logging.INFO, logger="app.build")
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (3, 0)
    assert not [r for r in caplog.records if "built differently" in r.getMessage()]


def test_an_index_labelled_by_its_own_head_serves_and_an_update_with_the_labeller_re_encodes(
    gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Built before IMGSEARCH_LABELLER=lite2 (no `labels` in meta.json): a service whose encoder takes
    another classifier's labels (on a second input size) still serves it and says how it was labelled;
    --update re-encodes every image (their vectors came from the other labels), and the new meta names
    the labeller."""
    cache, target, config = tmp_path / "cache", tmp_path / "index", BuildConfig(pca_dim=0, workers=0)
    own = fake_models()
    build_index(
        FolderSource(gallery),
        target,
        Pipeline(own, make_bridge(own, BridgeParams(), cache)),
        config,
        progress=False,
    )
    labelled = fake_models()
    labelled.image = FakeLabelledEncoder()
    labelled.image.load(torch.device("cpu"), torch.float32)
    index = Index(target)
    assert "labels" not in index.meta.models
    caplog.set_level(logging.INFO)
    service = service_over(index, labelled, cache)
    try:
        assert service.search_text("red thing", top_k=1)[0].record.source == "red.png"
    finally:
        service.close()
    assert "labelled by fake-image's own classes, served with fake-labeller's" in caplog.text
    pipeline = Pipeline(labelled, make_bridge(labelled, BridgeParams(), cache))
    report = build_index(FolderSource(gallery), target, pipeline, config, progress=False, update=True)
    assert (report.reused, report.encoded) == (0, 3)
    assert "label model: index '', now 'fake-labeller'" in caplog.text
    rebuilt = Index(target)
    assert rebuilt.meta.models["labels"] == "fake-labeller"
    assert rebuilt.meta.build_settings().label_model == "fake-labeller"
    rebuilt.close()


@pytest.mark.parametrize(
    ("given", "expected"), [("LITE2", "lite2"), (" own ", "own"), ("Lite0+Lite2", "lite0+lite2")]
)
def test_labeller_setting_accepts_its_choices_in_any_case(given: str, expected: str) -> None:
    assert Settings(labeller=given).labeller == expected


def test_labeller_setting_rejects_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_LABELLER", "lite4")
    with pytest.raises(ValidationError, match="IMGSEARCH_LABELLER must be lite2, lite0\\+lite2, own"):
        Settings()


def test_an_index_of_another_format_version_is_refused(index_dir: Path, tmp_path: Path) -> None:
    """A meta.json of another format version: IndexUnavailable saying so, not a misread index."""
    copy = tmp_path / "copy"
    shutil.copytree(live_path(index_dir), copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps(meta | {"format_version": 2}))
    with pytest.raises(IndexUnavailable, match="format version 2"):
        Index(copy)
