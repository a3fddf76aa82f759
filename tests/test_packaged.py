"""The default `packaged` profile on its real, offline weights over scikit-image's photos."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.conftest import wait_ready

pytestmark = pytest.mark.real_weights

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "horse", "camera")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's bundled photos saved as JPEG files."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        array = np.asarray(getattr(data, name)())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        Image.fromarray(array).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    return folder


@pytest.fixture(scope="module")
def client(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real service, packaged profile, over an index built by the batch script."""
    from scripts import build_index

    index_dir = tmp_path_factory.mktemp("index") / "photos"
    assert (
        build_index.main(["--images", str(photo_dir), "--index-dir", str(index_dir), "--workers", "0"]) == 0
    )
    settings = Settings(index_dir=index_dir, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client, timeout=300)
        yield test_client


@pytest.mark.parametrize(("query", "expected"), [("a cat", "chelsea"), ("a cup of coffee", "coffee")])
def test_text_query_ranks_the_matching_photo_first(client: TestClient, query: str, expected: str) -> None:
    results = client.post("/search", json={"query": query, "top_k": 3}).json()["results"]
    assert results[0]["source"] == f"{expected}.jpg", results


def test_image_query_finds_the_same_photo(client: TestClient, photo_dir: Path) -> None:
    upload = (photo_dir / "coffee.jpg").read_bytes()
    results = client.post("/search/image", files={"image": ("c.jpg", upload, "image/jpeg")}).json()["results"]
    assert results[0]["source"] == "coffee.jpg" and results[0]["score"] > 0.99


def describe_once_loaded(client: TestClient, upload: bytes) -> dict[str, Any]:
    """POST /describe as a client does: retry while it answers 503 + Retry-After (the LM still loading)."""
    deadline = time.monotonic() + 300
    while True:
        response = client.post("/describe", files={"image": ("cat.jpg", upload, "image/jpeg")})
        if response.status_code != 503 or "Retry-After" not in response.headers:
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, "the language model never finished loading"
        time.sleep(float(response.headers["Retry-After"]))


def test_describe_the_cat_photo_mentions_a_cat(client: TestClient, photo_dir: Path) -> None:
    body = describe_once_loaded(client, (photo_dir / "chelsea.jpg").read_bytes())
    assert "cat" in body["description"].lower() and body["description"].endswith(".")
    assert "cat" in body["labels"][0]["label"] or body["labels"][0]["label"] == "tabby"


def test_thumbnail_of_a_real_photo(client: TestClient) -> None:
    first = client.get("/search", params={"q": "a rocket", "top_k": 1}).json()["results"][0]
    response = client.get(first["thumbnail_url"])
    with Image.open(io.BytesIO(response.content)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 256


def test_cpu_fast_paths_give_the_plain_models_outputs(
    photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime (default) and the TorchScript fallback agree with eager PyTorch: cosine ≥ 0.9999."""
    import torch

    from app.encoders import efficientnet

    pictures = [Image.open(photo_dir / f"{name}.jpg").convert("RGB") for name in PHOTOS[:3]]

    def encode(encoder: efficientnet.EfficientNetLiteEncoder) -> tuple[torch.Tensor, torch.Tensor]:
        encoder.load(torch.device("cpu"), torch.float32)
        out = encoder.encode(torch.stack([encoder.preprocess(p) for p in pictures]))
        assert out.logits is not None
        return out.features, out.logits

    plain = encode(efficientnet.EfficientNetLiteEncoder(optimize=False))
    onnx = efficientnet.EfficientNetLiteEncoder(cache_dir=tmp_path)
    fast = encode(onnx)
    assert onnx.runner is not None and list((tmp_path / "onnx").glob("*.onnx"))
    again = efficientnet.EfficientNetLiteEncoder(cache_dir=tmp_path)
    cached = encode(again)  # from the cached export: the PyTorch network is never built
    assert again.net is None and torch.equal(cached[1], fast[1])

    def unavailable(*_: object) -> None:
        raise ImportError("no onnxruntime")

    monkeypatch.setattr(efficientnet, "onnx_runner", unavailable)
    scripted = efficientnet.EfficientNetLiteEncoder(cache_dir=tmp_path)
    fallback = encode(scripted)
    assert scripted.runner is None and isinstance(scripted.net, torch.jit.ScriptModule)
    for other in (fast, fallback):
        for a, b in zip(plain, other, strict=True):
            assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.9999


def test_language_model_cache_writes_the_same_model(tmp_path: Path) -> None:
    """The de-quantised SmolLM2 cached under the cache dir writes what the GGUF file itself writes."""
    import torch

    from app.encoders.language import WEIGHTS, CausalLanguageModel, smollm2_gguf

    prompt = [{"role": "user", "content": "Describe a photo of a tabby cat in one sentence."}]
    texts = []
    for cache_dir in (None, tmp_path, tmp_path):  # straight from GGUF, preparing the cache, from the cache
        model = CausalLanguageModel(str(smollm2_gguf()), cache_dir)
        model.load(torch.device("cpu"), torch.float32)
        texts.append(model.generate(prompt, max_new_tokens=12, prefix="A"))
    assert texts[0].strip() and texts[0] == texts[1] == texts[2]
    assert len(list((tmp_path / "lm").glob(f"*/{WEIGHTS}"))) == 1


def test_text_mode_reuses_the_shots_and_stops_at_the_clause_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The few-shot turns are encoded once: a query writes with them what it writes from a cold prompt,
    and generation ends at the first clause break instead of running on to its token limit."""
    import torch

    from app.encoders.language import STOPS, CausalLanguageModel, smollm2_gguf

    shots = [{"role": "system", "content": "Describe a photo in one short sentence."},
             {"role": "user", "content": "a red car"},
             {"role": "assistant", "content": "A red car parked on a street, by a harbour."}]  # fmt: skip
    model = CausalLanguageModel(str(smollm2_gguf()), tmp_path)
    model.load(torch.device("cpu"), torch.float32)

    def write(query: str) -> str:
        return model.generate([*shots, {"role": "user", "content": query}], 16, prefix=query.capitalize())

    with monkeypatch.context() as cold:
        cold.setattr(model, "_reused", lambda shared, ids: None)
        first = write("a dog in the snow")
    texts = [write("a dog in the snow"), write("an old lighthouse at sunset"), write("a dog in the snow")]
    assert model._shared is not None
    assert texts[0] == texts[2] == first
    for text in texts:
        assert not any(stop in text.rstrip("".join(STOPS)) for stop in STOPS), text


def test_shipped_reference_set_recognises_the_cat_and_the_coffee_photos(photo_dir: Path) -> None:
    """The clip-art and emoji set made by scripts/references.py: a photo's nearest references name it."""
    import torch

    from app.encoders.efficientnet import EfficientNetLiteEncoder
    from app.preprocessing import decode
    from app.references import DEFAULT_SET, find_references

    encoder = EfficientNetLiteEncoder(optimize=False)
    encoder.load(torch.device("cpu"), torch.float32)
    references = find_references(DEFAULT_SET, encoder.model_id)
    assert references is not None and len(references) > 5000
    names = ("chelsea", "coffee")
    pixels = torch.stack([encoder.preprocess(decode(photo_dir / f"{name}.jpg")) for name in names])
    _, rows = references.neighbours(encoder.encode(pixels).features, k=10)
    words = {
        "chelsea": ("cat", "kitten", "tiger", "leopard", "lion"),
        "coffee": ("coffe", "tea", "cup", "mug"),
    }
    for name, found in zip(names, rows, strict=True):
        captions = [references.captions[references.caption_of[int(row)]] for row in found]
        said = [token for caption in captions for token in caption.lower().replace(",", " ").split()]
        for other, stems in words.items():
            named = any(token.startswith(stems) for token in said)
            assert named == (other == name), (name, captions)


def test_the_lite2_labeller_labels_from_its_own_260_px_input_and_keeps_lite0s_features(
    photo_dir: Path, tmp_path: Path
) -> None:
    """The packaged labeller: the features are Lite0's from exactly its 224 px input (search by image, the
    reference set and indexes built before keep their space), the labels Lite2's from its own 260 px
    preprocessing of the same picture (IMGSEARCH_LABELLER=lite2), or Lite0's and Lite2's probabilities
    mixed 0.25 : 0.75 (lite0+lite2, the default); at int8 (the default) Lite2 is quantized with the
    shipped 260 px table, cached beside its export with that in its key, and still names the cat and
    the coffee."""
    import torch

    from app.encoders.base import file_digest
    from app.encoders.efficientnet import EfficientNetLiteEncoder, weights_file
    from app.encoders.onnx import cached_export_path
    from app.encoders.quantize import DEFAULT_CONFIG, int8_path, shipped_table
    from app.preprocessing import decode, stack, tensors_of

    own = EfficientNetLiteEncoder(optimize=False)
    lite2 = EfficientNetLiteEncoder(optimize=False, variant=2)
    labelled = EfficientNetLiteEncoder(optimize=False, label_variant=2)
    mixed = EfficientNetLiteEncoder(optimize=False, label_variant=2, label_weight=0.75)
    for encoder in (own, lite2, labelled, mixed):
        encoder.load(torch.device("cpu"), torch.float32)
    assert (labelled.model_id, labelled.label_model) == ("efficientnet-lite0", "efficientnet-lite2")
    assert mixed.label_model == "efficientnet-lite0:0.25+efficientnet-lite2:0.75"
    pictures = [decode(photo_dir / f"{name}.jpg") for name in ("chelsea", "coffee")]
    pixels = stack([labelled.inputs(picture) for picture in pictures])
    small, large = tensors_of(pixels, 2)
    assert (small.shape[-1], large.shape[-1]) == (224, 260)
    plain = own.encode(torch.stack([own.preprocess(picture) for picture in pictures]))
    other = lite2.encode(torch.stack([lite2.preprocess(picture) for picture in pictures]))
    both, mix = labelled.encode(pixels), mixed.encode(pixels)
    assert torch.allclose(plain.features, both.features, atol=1e-5)
    assert torch.allclose(plain.features, mix.features, atol=1e-5)
    assert torch.allclose(plain.features, mixed.features(small), atol=1e-5)  # search by image: Lite0 alone
    assert plain.logits is not None and other.logits is not None
    assert both.logits is not None and mix.logits is not None
    assert torch.allclose(both.logits, other.logits, atol=1e-5)
    expected = 0.25 * torch.softmax(plain.logits, -1) + 0.75 * torch.softmax(other.logits, -1)
    assert torch.allclose(torch.exp(mix.logits), expected, atol=1e-5)
    quantized = EfficientNetLiteEncoder(
        cache_dir=tmp_path, precision="int8", label_variant=2, label_weight=0.75
    )
    quantized.load(torch.device("cpu"), torch.float32)
    assert quantized.labeller is not None and quantized.labeller.precision == "int8"
    weights = Path(weights_file(2))
    table = shipped_table("efficientnet-lite2", file_digest(weights), DEFAULT_CONFIG)
    export = cached_export_path("efficientnet-lite2", weights, tmp_path)
    assert table.is_file() and int8_path(export, DEFAULT_CONFIG, table).is_file()
    fast = quantized.encode(pixels)
    assert fast.logits is not None
    for logits in (both.logits, mix.logits, fast.logits):
        top = [labelled.labels[int(row.argmax())] for row in logits] if labelled.labels else []
        assert top[0] in ("tabby", "tiger cat", "Egyptian cat"), top
        assert top[1] in ("espresso", "cup", "coffee mug"), top
