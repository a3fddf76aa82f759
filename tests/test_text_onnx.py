"""The text encoder on ONNX Runtime: the PyTorch model's vectors, exported once, then started without it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from app.encoders.text import MeanPoolTextEncoder
from app.registry import MINILM_ID, _minilm

TEXTS = ["a red car", "Eiffel Tower at night", "", "un chat noir sur le canapé", "dog " * 300]
CPU = torch.device("cpu")


def _encoder(optimize: bool, cache: Path | None) -> MeanPoolTextEncoder:
    encoder = MeanPoolTextEncoder(_minilm(), MINILM_ID, optimize=optimize, cache_dir=cache)
    encoder.load(CPU, torch.float32)
    return encoder


@pytest.mark.real_weights
def test_the_onnx_text_encoder_gives_the_pytorch_vectors_and_starts_from_its_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference = _encoder(optimize=False, cache=None).encode(TEXTS)
    with caplog.at_level(logging.INFO, logger="app.encoders.text"):
        first = _encoder(optimize=True, cache=tmp_path)
    assert first.runner is not None
    assert "exporting it to ONNX" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.encoders.text"):
        second = _encoder(optimize=True, cache=tmp_path)
    assert "exporting" not in caplog.text  # the export is reused
    assert not hasattr(second, "net")  # and no PyTorch model was built
    for vectors in (first.encode(TEXTS), second.encode(TEXTS), second.encode(TEXTS[:1])):
        cosines = np.sum(vectors * reference[: len(vectors)], axis=1)
        assert cosines.min() > 0.9999
    assert second.dim == reference.shape[1] == 384


def test_a_folder_without_a_fast_tokenizer_runs_on_pytorch(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    encoder = MeanPoolTextEncoder(str(folder), optimize=True, cache_dir=tmp_path)
    assert encoder._load_onnx() is False
