"""Every model profile end to end with tiny random models built here: build, search, describe."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image

from app import cli
from app.api.runtime import Runtime
from app.assembly import load_service, service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, BuildReport, build_index
from app.describer import FUNCTION_WORDS, UNSURE, Thresholds
from app.errors import IndexMismatch, NotReady
from app.index import Index
from app.labels import imagenet_labels, words
from app.meta import Dims
from app.pipeline import Models, Pipeline
from app.registry import COPIES, PROFILES, make_bridge, prepare
from app.service import Description, SearchService
from app.settings import Profile as ProfileName, Settings
from app.sources import FolderSource
from tests.tiny_models import build_resnet50_state_dict, build_tiny_bert, build_tiny_clip, build_tiny_gpt2

GALLERY: dict[str, tuple[int, int, int]] = {
    "red.png": (220, 20, 20),
    "green.jpg": (20, 200, 20),
    "blue.png": (20, 20, 220),
    "yellow.jpg": (240, 220, 30),
    "black.png": (0, 0, 0),
    "white.png": (255, 255, 255),
}
QUERY = "a red square"
SCORE_SLACK = 1e-3  # vectors are stored as float16, so a perfect match may read 1.0002


def encoded(colour: tuple[int, int, int], name: str) -> bytes:
    """A 48×48 picture of one colour, encoded in the format the file name says."""
    out = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(out, format="JPEG" if name.endswith(".jpg") else "PNG")
    return out.getvalue()


@dataclass
class ProfileRun:
    """A profile's loaded models, the index they built over the gallery and the service over it."""

    profile: str
    models: Models
    report: BuildReport
    index_dir: Path
    service: SearchService
    expected_ids: dict[str, str]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding the tiny models of this module."""
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small pictures of distinct colours, PNG and JPEG."""
    root = tmp_path_factory.mktemp("profile-gallery")
    for name, colour in GALLERY.items():
        (root / name).write_bytes(encoded(colour, name))
    return root


@pytest.fixture(scope="module")
def gpt2_dir(tiny_dir: Path) -> Path:
    """Tiny GPT-2 folder (a base model: no chat template)."""
    return build_tiny_gpt2(tiny_dir / "gpt2")


def run_profile(profile: str, settings: Settings, index_dir: Path, image_dir: Path) -> ProfileRun:
    """Load a profile's models, build an index of the gallery with them and open a service over it."""
    models = prepare(settings, profile)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir), flip=True)
    report = build_index(
        FolderSource(image_dir),
        index_dir,
        pipeline,
        BuildConfig(pca_dim=0, workers=0),
        progress=False,
    )
    service = service_over(Index(index_dir), models, settings.cache_dir)
    expected = {
        "image": settings.image_model or "",
        "text": settings.text_model or "",
        "lm": settings.lm_model or "",
    }
    return ProfileRun(profile, models, report, index_dir, service, expected)


@pytest.fixture(scope="module")
def seed_run(tiny_dir: Path, gpt2_dir: Path, image_dir: Path) -> Iterator[ProfileRun]:
    """The seed profile: random ResNet-50 weights, tiny BERT, tiny GPT-2."""
    settings = Settings(
        image_model=str(build_resnet50_state_dict(tiny_dir / "resnet50.pth")),
        text_model=str(build_tiny_bert(tiny_dir / "bert")),
        lm_model=str(gpt2_dir),
        cache_dir=tiny_dir / "cache",
        device="cpu",
    )
    run = run_profile("seed", settings, tiny_dir / "seed-index", image_dir)
    run.expected_ids["image"] = f"resnet50:{settings.image_model}"
    yield run
    run.service.close()


@pytest.fixture(scope="module")
def clip_run(tiny_dir: Path, gpt2_dir: Path, image_dir: Path) -> Iterator[ProfileRun]:
    """The clip profile: one tiny CLIP folder for both towers, tiny GPT-2."""
    clip = str(build_tiny_clip(tiny_dir / "clip"))
    settings = Settings(image_model=clip, lm_model=str(gpt2_dir), cache_dir=tiny_dir / "cache", device="cpu")
    run = run_profile("clip", settings, tiny_dir / "clip-index", image_dir)
    run.expected_ids["text"] = clip
    yield run
    run.service.close()


@pytest.fixture(params=["seed", "clip"])
def run(request: pytest.FixtureRequest) -> ProfileRun:
    """Each profile in turn."""
    result: ProfileRun = request.getfixturevalue(f"{request.param}_run")
    return result


def test_build_indexes_every_image_with_the_tiny_models(run: ProfileRun) -> None:
    """The index holds each gallery picture once and names the profile and models that built it."""
    index = run.service.index
    assert run.report.indexed == len(GALLERY)
    assert run.report.skipped == []
    assert index.count == len(GALLERY)
    assert sorted(record.source for record in index.records(list(range(index.count)))) == sorted(GALLERY)
    assert index.meta.profile == run.profile
    assert index.meta.models == run.expected_ids


def test_text_search_returns_ranked_indexed_images(run: ProfileRun) -> None:
    """A text query gets top_k distinct indexed images with cosine scores, best first."""
    hits = run.service.search_text(QUERY, top_k=3)
    assert len(hits) == 3
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 - SCORE_SLACK <= score <= 1 + SCORE_SLACK for score in scores)
    assert len({hit.record.id for hit in hits}) == 3
    for hit in hits:
        assert run.service.index.get(hit.record.id).source == hit.record.source


def test_image_search_finds_the_same_picture_first(run: ProfileRun, image_dir: Path) -> None:
    """Uploading an indexed picture ranks that picture first with a cosine of about 1."""
    hits = run.service.search_image((image_dir / "green.jpg").read_bytes(), top_k=len(GALLERY))
    assert [hit.record.source for hit in hits][:1] == ["green.jpg"]
    assert hits[0].score == pytest.approx(1.0, abs=SCORE_SLACK)
    assert all(hit.score < hits[0].score for hit in hits[1:])
    assert len(hits) == len(GALLERY)


def assert_named_from_evidence(description: Description) -> None:
    """Every content word of the sentence has evidence; with none, the sentence says the models are unsure."""
    content = set(words(description.text)) - FUNCTION_WORDS
    evidence = {w for e in description.evidence for w in words(e.phrase)}
    if evidence:
        assert content <= evidence, (description.text, evidence)
    else:  # random tiny models are unsure of everything: the sentence says so and names nothing
        assert description.text == UNSURE and (description.confidence or 0.0) < Thresholds().hedge


def test_describe_upload_writes_a_sentence_from_its_labels(run: ProfileRun, image_dir: Path) -> None:
    """Describing an upload gives one capitalised sentence that names its most likely ImageNet label."""
    description = run.service.describe_upload((image_dir / "red.png").read_bytes())
    assert description.text.strip()
    assert description.text.endswith(".")
    assert description.text[0].isupper()
    assert description.labels
    assert all(isinstance(label, str) and isinstance(p, float) for label, p in description.labels)
    assert {label for label, _ in description.labels} <= set(imagenet_labels())
    probabilities = [p for _, p in description.labels]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert_named_from_evidence(description)


def test_describe_indexed_describes_the_original_as_an_upload(run: ProfileRun) -> None:
    """Describing an indexed image reads its original again: the sentence and labels of its upload."""
    record = run.service.index.records([0])[0]
    description = run.service.describe_indexed(record.id)
    upload = run.service.describe_upload(run.service.original_path(record).read_bytes())
    assert (description.text, description.labels) == (upload.text, upload.labels)
    assert description.text.endswith(".")
    assert_named_from_evidence(description)


def test_clip_index_stores_vectors_of_the_joint_space(clip_run: ProfileRun) -> None:
    """For CLIP the stored vectors are the image embeddings, and text scores are cosines with them."""
    index = clip_run.service.index
    assert clip_run.service.pipeline.bridge.identity is True
    projection = clip_run.models.text.dim
    assert index.meta.dims == Dims(vector=projection, text=projection, feature=projection)
    vectors = np.asarray(index.vectors, dtype=np.float32)
    np.testing.assert_allclose(vectors, np.asarray(index.features, dtype=np.float32), atol=2e-3)
    query = clip_run.models.text.encode([QUERY])[0]
    hits = clip_run.service.search_text(QUERY, top_k=len(GALLERY))
    expected = {record.id: float(vectors[record.row] @ query) for record in (hit.record for hit in hits)}
    assert {hit.record.id: hit.score for hit in hits} == pytest.approx(expected, abs=1e-5)


def test_seed_index_bridges_labels_into_the_text_space(seed_run: ProfileRun) -> None:
    """For the seed profile the stored vectors live in BERT's space, the visual features in ResNet's."""
    index = seed_run.service.index
    assert seed_run.service.pipeline.bridge.identity is False
    text_dim = seed_run.models.text.dim
    assert index.meta.dims == Dims(vector=text_dim, text=text_dim, feature=2048)
    norms = np.linalg.norm(np.asarray(index.vectors, dtype=np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_seed_index_is_refused_by_the_clip_models(
    seed_run: ProfileRun, clip_run: ProfileRun, tiny_dir: Path
) -> None:
    """Serving the seed index with the CLIP models fails with a message naming both profiles."""
    index = Index(seed_run.index_dir)
    try:
        with pytest.raises(IndexMismatch) as caught:
            service_over(index, clip_run.models, tiny_dir / "cache")
    finally:
        index.close()
    message = str(caught.value)
    assert "'seed'" in message
    assert "'clip'" in message


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("seed", "cannot load the weights of the seed profile's image model offline (no copy of resnet50-"),
        (
            "clip",
            "cannot load the weights of the clip profile's image model offline (openai/clip-vit-base-patch32 "
            "is not in the Hugging Face cache and HF_HUB_OFFLINE forbids downloads)",
        ),
    ],
)
def test_a_profile_without_its_weights_says_where_to_put_them(
    profile: str,
    expected: str,
    image_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No copy in IMGSEARCH_MODEL_DIR or any cache, downloads off: one line naming what to set, exit 1."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMGSEARCH_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    argv = ["build", "--images", str(image_dir), "--index-dir", str(tmp_path / "index"), "--profile", profile]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {expected}"), line
    assert f"in {tmp_path / 'models'} (IMGSEARCH_MODEL_DIR), or point IMGSEARCH_IMAGE_MODEL at a copy" in line
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "index").exists()


def test_the_service_reports_missing_weights_in_one_line(
    seed_run: ProfileRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same failure at service start: one line as the reason /readyz gives, no traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    settings = Settings(  # a seed index, served without the copies it was built with
        index_dir=seed_run.index_dir, model_dir=tmp_path / "models", device="cpu", cache_dir=tmp_path
    )
    runtime = Runtime(settings, load_service)
    runtime.start()
    try:
        assert not runtime.wait(120)
        assert runtime.error is not None and "\n" not in runtime.error
        assert runtime.error.startswith("cannot load the weights of the seed profile's image model offline")
        with pytest.raises(NotReady, match="IMGSEARCH_MODEL_DIR"):
            runtime.require()
    finally:
        runtime.close()


def test_the_language_model_only_picks_among_candidates(run: ProfileRun) -> None:
    """The profile's language model scores candidate sentences (finite, per sentence) and picks one."""
    describer = run.service.describer
    assert describer.lm is not None
    candidates = ["Probably a frog.", "Likely a frog.", "A frog or a toad."]
    scores = describer.lm.score(candidates)
    assert len(scores) == 3 and all(np.isfinite(scores)) and len(set(scores)) > 1  # a real preference
    assert describer.pick(candidates) in candidates


@pytest.fixture
def closed_endpoint() -> Iterator[str]:
    """The URL of a loopback port that refuses connections: a hub that cannot be reached."""
    with socket.socket() as held:  # bound, never listening: connections are refused, the port stays ours
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def run_offline(
    argv: list[str], tmp_path: Path, endpoint: str, hub_offline: bool, **env: str
) -> tuple[int, str]:
    """`imgsearch ARGV` in a fresh process with empty model caches and no hub: (exit status, stderr)."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("HF_", "IMGSEARCH_"))
    }
    environment |= {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "IMGSEARCH_MODEL_DIR": str(tmp_path / "models"),
        "IMGSEARCH_CACHE_DIR": str(tmp_path / "cache"),
        "IMGSEARCH_DEVICE": "cpu",
        **({"HF_HUB_OFFLINE": "1"} if hub_offline else {}),
        **env,
    }
    # The timeout only guards against a hang; without the fix this spent minutes in the hub's retries.
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *argv], env=environment, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("hub_offline", [False, True], ids=["no-network", "HF_HUB_OFFLINE"])
def test_missing_clip_weights_fail_in_one_line_without_retrying_the_hub(
    image_dir: Path, tmp_path: Path, closed_endpoint: str, hub_offline: bool
) -> None:
    argv = ["build", "--images", str(image_dir), "--index-dir", str(tmp_path / "index"), "--profile", "clip"]
    status, stderr = run_offline(argv, tmp_path, closed_endpoint, hub_offline)
    assert status == 1, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "clip profile's image model" in line and "openai/clip-vit-base-patch32" in line  # which model
    assert (
        f"put openai--clip-vit-base-patch32 in {tmp_path / 'models'} (IMGSEARCH_MODEL_DIR)" in line
    )  # where
    assert (closed_endpoint in line) != hub_offline  # the server it could not reach, or why it did not try
    assert "Retrying" not in stderr and "Traceback" not in stderr
    assert not (tmp_path / "index").exists()


def test_a_profile_other_than_the_index_is_refused_before_any_model_loads(
    index_dir: Path, tmp_path: Path, closed_endpoint: str
) -> None:
    argv = ["search", "red", "--index-dir", str(index_dir)]
    status, stderr = run_offline(argv, tmp_path, closed_endpoint, False, IMGSEARCH_PROFILE="clip")
    assert status == 1, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "built with profile 'fake' and IMGSEARCH_PROFILE asks for 'clip'" in line, line
    assert "Retrying" not in stderr and "clip-vit" not in stderr  # no clip model was looked for


def test_the_service_refuses_a_profile_other_than_the_index_naming_both(
    index_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(index_dir=index_dir, profile="clip", device="cpu", cache_dir=tmp_path)
    runtime = Runtime(settings, load_service)
    runtime.start()
    try:
        assert not runtime.wait(120)
        assert runtime.error is not None and "'fake'" in runtime.error and "'clip'" in runtime.error
        assert "IMGSEARCH_PROFILE" in runtime.error and "cannot load" not in runtime.error
    finally:
        runtime.close()


def test_every_profile_is_declared_once_for_the_registry_and_the_settings() -> None:
    """The README's recipe: a profile in PROFILES is one `--profile` and IMGSEARCH_PROFILE accept."""
    assert list(PROFILES) == list(get_args(ProfileName))
    assert set(COPIES) <= set(PROFILES)
