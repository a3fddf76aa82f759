"""The int8 image encoder: made once per weights and settings, remade when damaged, close to float32."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from app.assembly import service_over
from app.build import BuildConfig, build_index
from app.encoders import quantize
from app.encoders.onnx import OnnxRunner, export
from app.encoders.quantize import QuantConfig, int8_model
from app.index import META, Index, live_path
from app.pipeline import Pipeline
from app.settings import Settings
from app.sources import FolderSource

SIZE = 32


class Tiny(torch.nn.Module):
    """A small convolutional net shaped like the encoders: (features, logits)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(pixels)).mean(dim=(2, 3))
        return features, self.head(features)


def photos() -> np.ndarray:
    """Calibration pixels for the tiny net."""
    return np.random.default_rng(0).uniform(-1, 1, (16, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every int8 file actually quantized (not read back from the cache)."""
    calls: list[Path] = []
    real = quantize.quantize

    def counting(float_path: Path, target: Path, *args: object) -> Path:
        calls.append(target)
        return real(float_path, target, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(quantize, "quantize", counting)
    return calls


def exported(folder: Path, seed: int) -> Path:
    """A float32 ONNX file of Tiny(seed), named as app/encoders/onnx.py names exports."""
    return export(Tiny(seed).eval(), SIZE, folder / f"tiny-{seed}-torch-opset17.onnx")


def run(path: Path) -> np.ndarray:
    """Features of the calibration pixels through an ONNX file."""
    features, _ = OnnxRunner(path, 1)(torch.from_numpy(photos()))
    return features.numpy()


def test_int8_model_is_made_once_and_read_back(tmp_path: Path, made: list[Path]) -> None:
    float_path = exported(tmp_path, 0)
    first = int8_model(float_path, "tiny", "w0", photos)
    second = int8_model(float_path, "tiny", "w0", photos)
    assert first == second and made == [first]
    cosine = (run(first) * run(float_path)).sum(1)
    cosine /= np.linalg.norm(run(first), axis=1) * np.linalg.norm(run(float_path), axis=1)
    assert cosine.min() > 0.98


def test_other_settings_or_weights_make_another_int8_model(tmp_path: Path, made: list[Path]) -> None:
    float_path = exported(tmp_path, 0)
    default = int8_model(float_path, "tiny", "w0", photos)
    minmax = int8_model(float_path, "tiny", "w0", photos, QuantConfig(method="MinMax"))
    other_weights = int8_model(exported(tmp_path, 1), "tiny", "w1", photos)
    assert len({default, minmax, other_weights}) == 3 and made == [default, minmax, other_weights]
    assert not np.allclose(run(default), run(other_weights))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "sidecar"])
def test_a_damaged_int8_model_is_made_again(tmp_path: Path, made: list[Path], damage: str) -> None:
    float_path = exported(tmp_path, 0)
    path = int8_model(float_path, "tiny", "w0", photos)
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(good))
    else:
        path.with_name(path.name + ".sha256").unlink()
    again = int8_model(float_path, "tiny", "w0", photos)
    assert again == path and made == [path, path]
    np.testing.assert_allclose(run(again), run(float_path), atol=0.1)


def test_a_shipped_table_replaces_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a calibration table for these weights the photos are never read; a table that fits no
    tensor of the graph is ignored."""
    float_path = exported(tmp_path, 0)
    monkeypatch.setattr(quantize, "DATA", tmp_path / "data")
    (tmp_path / "data").mkdir()
    table = quantize.shipped_table("tiny", "w0", quantize.DEFAULT_CONFIG, tmp_path / "data")
    quantize.quantize(float_path, tmp_path / "made.onnx", quantize.DEFAULT_CONFIG, table, photos)
    assert table.is_file()

    def no_photos() -> np.ndarray:
        raise AssertionError("calibrated although a table was shipped")

    monkeypatch.setattr(quantize, "shipped_table", lambda *_: table)  # the table path int8_model looks up
    path = int8_model(float_path, "tiny", "w0", no_photos)
    assert path.is_file()
    table.write_text(json.dumps({"calibration_method": "Percentile", "data": {"nowhere": [0, 1]}}))
    read: list[bool] = []

    def counted() -> np.ndarray:
        read.append(True)
        return photos()

    int8_model(float_path, "tiny", "w0", counted)
    assert read == [True]


class OneSigned(torch.nn.Module):
    """A 1×1 convolution over 64 channels whose weights share a sign for each output, fed positive
    values: the products that ONNX Runtime's x86 u8×s8 kernels add in pairs overflow 16 bits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(64, 16, 1)
        with torch.no_grad():
            self.conv.weight.uniform_(0.5, 1.0)
            self.conv.weight[8:] *= -1
        self.head = torch.nn.Linear(16, 5)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.conv(pixels.reshape(-1, 64, 6, 8)).mean(dim=(2, 3))
        return features, self.head(features)


def positive_photos() -> np.ndarray:
    """Calibration pixels in [0, 1] for OneSigned."""
    return np.random.default_rng(0).uniform(0, 1, (16, 3, SIZE, SIZE)).astype(np.float32)


def test_int8_features_agree_where_the_cpus_int8_kernels_would_saturate(tmp_path: Path) -> None:
    """On x86 without VNNI the u8×s8 pair sums saturate (features 8 % off here); the int8 model runs
    within 2 % of float32 on every CPU."""
    float_path = export(OneSigned().eval(), SIZE, tmp_path / "one-signed-torch-opset17.onnx")
    path = int8_model(float_path, "one-signed", "w0", positive_photos)
    pixels = torch.from_numpy(positive_photos())
    exact, _ = OnnxRunner(float_path, 1)(pixels)
    fast, _ = OnnxRunner(path, 1)(pixels)
    assert (fast - exact).abs().max() <= 0.02 * exact.abs().max()


@pytest.mark.parametrize(
    ("machine", "flags", "saturating"),
    [
        ("x86_64", "fpu sse4_1 avx2 fma", True),
        ("x86_64", "fpu avx2 avx512f avx512_vnni", False),
        ("x86_64", "fpu avx2 avx_vnni", False),
        ("aarch64", "fp asimd asimddp", False),
    ],
)
def test_the_cpu_decides_whether_int8_runs_exact_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, flags: str, saturating: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr("platform.machine", lambda: machine)
    assert quantize.saturating_cpu(cpuinfo) is saturating
    monkeypatch.setattr(quantize, "saturating_cpu", lambda: saturating)
    runner = OnnxRunner(exported(tmp_path, 0), 1)
    entry = runner.session.get_session_options().get_session_config_entry("session.x64quantprecision")
    assert (entry == "1") is saturating


def test_a_new_int8_model_that_disagrees_with_float32_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Checked on pictures like the calibration's it agrees; on pictures far outside the ranges it
    was calibrated for, its features clip and a warning says so."""
    with caplog.at_level(logging.INFO, logger="app.encoders.quantize"):
        int8_model(exported(tmp_path, 0), "tiny", "w0", photos, check=photos)
    assert "feature cosine to float32 ≥" in caplog.text and "disagrees" not in caplog.text

    def far() -> np.ndarray:
        signs = np.array([-1.0, 0.0, 1.0], dtype=np.float32).reshape(1, 3, 1, 1)
        return 50 * signs * np.random.default_rng(1).uniform(-1, 1, (6, 3, SIZE, SIZE)).astype(np.float32)

    with caplog.at_level(logging.WARNING, logger="app.encoders.quantize"):
        int8_model(exported(tmp_path / "again", 0), "tiny", "w0", photos, check=far)
    assert "disagrees with float32: feature cosine 0.9" in caplog.text


@pytest.mark.parametrize(("given", "expected"), [("INT8", "int8"), (" fp32 ", "fp32")])
def test_precision_setting_accepts_int8_and_fp32(given: str, expected: str) -> None:
    assert Settings(precision=given).precision == expected


def test_precision_setting_rejects_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_PRECISION", "int4")
    with pytest.raises(ValidationError, match="IMGSEARCH_PRECISION must be int8 or fp32"):
        Settings()


@pytest.mark.real_weights
def test_int8_encoder_agrees_with_float32_on_the_photos(tmp_path: Path) -> None:
    """Feature cosine ≥ 0.98 on scikit-image's photos; the cat and the coffee keep their top label."""
    from skimage import data

    from app.encoders.efficientnet import EfficientNetLiteEncoder

    names = ("chelsea", "coffee", "astronaut", "rocket", "horse", "camera")
    pictures = []
    for name in names:
        array = np.asarray(getattr(data, name)())
        pictures.append(Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1)))
    outputs = {}
    for precision in ("fp32", "int8"):
        encoder = EfficientNetLiteEncoder(cache_dir=tmp_path, precision=precision)
        encoder.load(torch.device("cpu"), torch.float32)
        assert encoder.precision == precision
        outputs[precision] = encoder.encode(
            torch.stack([encoder.preprocess(p.convert("RGB")) for p in pictures])
        )
    exact, fast = outputs["fp32"], outputs["int8"]
    cosine = torch.nn.functional.cosine_similarity(exact.features, fast.features)
    assert cosine.min() >= 0.98, dict(zip(names, cosine.tolist(), strict=True))
    assert exact.logits is not None and fast.logits is not None
    assert (exact.logits[:2].argmax(1) == fast.logits[:2].argmax(1)).all()
    assert len(list((tmp_path / "onnx").glob("*-int8-*.onnx"))) == 1


def test_an_index_built_before_precisions_were_recorded_still_serves(
    pipeline: Pipeline, gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """meta.json records the image encoder's precision; an older index without it (a float32 build)
    opens under an int8 encoder, answers searches and says what it was built with."""
    index_dir = tmp_path / "index"
    build_index(FolderSource(gallery), index_dir, pipeline, BuildConfig(pca_dim=0, workers=0), progress=False)
    meta_path = live_path(index_dir) / META
    meta = json.loads(meta_path.read_text())
    assert meta["precision"] == {"image": "fp32"}
    del meta["precision"]
    meta_path.write_text(json.dumps(meta))
    int8 = dataclasses.replace(pipeline.models, image=copy.copy(pipeline.models.image))
    int8.image.quantized = True
    with caplog.at_level(logging.INFO, logger="app.service"):
        service = service_over(Index(index_dir), int8, tmp_path / "cache")
    try:
        assert service.search_text("red", 1)[0].record.source == "red.png"
    finally:
        service.close()
    assert "index built with the fp32 image encoder, serving with int8" in caplog.text
