"""On a CUDA device: float16 models, a build and the API (skipped where torch sees no GPU)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.device import resolve_device
from app.encoders.efficientnet import EfficientNetLiteEncoder
from app.main import create_app
from app.pipeline import Pipeline
from app.registry import make_bridge, prepare
from app.settings import Settings
from app.sources import FolderSource
from tests.conftest import wait_ready
from tests.tiny_models import build_tiny_clip, build_tiny_gpt2

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
COLOURS = {"red.png": (220, 20, 20), "green.png": (20, 200, 20), "blue.png": (20, 20, 220)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three one-colour pictures, a tiny CLIP and a tiny GPT-2, in folders of their own."""
    root = tmp_path_factory.mktemp("cuda")
    images = root / "images"
    images.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (64, 48), colour).save(images / name)
    return {
        "images": images,
        "clip": build_tiny_clip(root / "clip"),
        "gpt2": build_tiny_gpt2(root / "gpt2"),
        "root": root,
    }


def settings_for(folders: dict[str, Path], device: str, index_dir: Path) -> Settings:
    """The clip profile on tiny models, on one device."""
    return Settings(
        index_dir=index_dir,
        profile="clip",
        image_model=str(folders["clip"]),
        lm_model=str(folders["gpt2"]),
        cache_dir=folders["root"] / "cache",
        device=device,
    )


def build(settings: Settings, folders: dict[str, Path]) -> None:
    """Index the pictures with the settings' device."""
    models = prepare(settings, "clip", with_lm=False)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    build_index(
        FolderSource(folders["images"]), settings.index_dir, pipeline, BuildConfig(workers=0), progress=False
    )


def test_auto_device_is_the_gpu_in_half_precision() -> None:
    device, dtype = resolve_device("auto")
    assert device.type == "cuda" and dtype == torch.float16


def test_a_gpu_build_stores_the_same_vectors_as_a_cpu_build(folders: dict[str, Path]) -> None:
    from app.index import Index

    cpu, gpu = folders["root"] / "cpu-index", folders["root"] / "gpu-index"
    build(settings_for(folders, "cpu", cpu), folders)
    build(settings_for(folders, "cuda", gpu), folders)
    a, b = Index(cpu), Index(gpu)
    assert [r.id for r in a.records([0, 1, 2])] == [r.id for r in b.records([0, 1, 2])]
    va, vb = np.asarray(a.vectors, dtype=np.float32), np.asarray(b.vectors, dtype=np.float32)
    assert (va * vb).sum(axis=1).min() >= 0.99


@pytest.fixture(scope="module")
def client(folders: dict[str, Path]) -> Iterator[TestClient]:
    """The real app on the GPU over a GPU-built index."""
    settings = settings_for(folders, "cuda", folders["root"] / "api-index")
    build(settings, folders)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client, timeout=300)
        yield test_client


def test_the_service_reports_and_uses_the_gpu(client: TestClient, folders: dict[str, Path]) -> None:
    ready = client.get("/readyz").json()
    assert ready["device"].startswith("cuda")
    found = client.post("/search", json={"query": "a red square", "top_k": 3}).json()
    assert len(found["results"]) == 3
    upload = (folders["images"] / "green.png").read_bytes()
    by_image = client.post("/search/image", files={"image": ("g.png", upload, "image/png")}).json()
    assert by_image["results"][0]["source"] == "green.png"
    described = client.post("/describe", files={"image": ("g.png", upload, "image/png")})
    assert described.status_code == 200 and described.json()["description"].strip()


@pytest.mark.real_weights
def test_packaged_image_encoder_agrees_between_gpu_half_and_cpu() -> None:
    from skimage import data

    pictures = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("chelsea", "coffee")]
    outputs = []
    for device, dtype in ((torch.device("cpu"), torch.float32), (torch.device("cuda"), torch.float16)):
        encoder = EfficientNetLiteEncoder()
        encoder.load(device, dtype)
        outputs.append(encoder.encode(torch.stack([encoder.preprocess(p) for p in pictures])))
    cpu, gpu = outputs
    assert cpu.logits is not None and gpu.logits is not None
    assert torch.nn.functional.cosine_similarity(cpu.features, gpu.features).min() >= 0.99
    assert (cpu.logits.argmax(1) == gpu.logits.argmax(1)).all()
