"""A first start embeds no label or reference caption: their vectors ship in app/data, per text model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app import bridge
from app.bridge import label_vectors, shipped_text_vectors, text_key, text_vectors_path
from tests.fakes import FakeTextEncoder

LABELS = ["tabby cat", "coffee mug", "space shuttle"]
TEMPLATES = ("a photo of a {}.", "{}")


class Refusing(FakeTextEncoder):
    """Counts the texts it is asked to embed."""

    embedded = 0

    def _forward(self, texts: list[str]) -> torch.Tensor:
        Refusing.embedded += len(texts)
        return super()._forward(texts)


def test_shipped_vectors_replace_embedding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = Refusing()
    text.load(torch.device("cpu"), torch.float32)
    computed = label_vectors(text, LABELS, TEMPLATES, tmp_path / "cache")
    monkeypatch.setattr(bridge, "REFERENCE_DIR", tmp_path / "data")
    (tmp_path / "data").mkdir()
    key = text_key(text.model_id, LABELS, TEMPLATES)
    arrays: dict[str, Any] = {key: computed.astype(np.float16)}
    np.savez_compressed(text_vectors_path(text.model_id), **arrays)
    Refusing.embedded = 0
    shipped = label_vectors(text, LABELS, TEMPLATES, None)
    assert Refusing.embedded == 0
    np.testing.assert_allclose(shipped, computed, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(shipped, axis=1), 1.0, atol=1e-5)
    other = label_vectors(text, [*LABELS, "horse"], TEMPLATES, None)  # another key: embedded as before
    assert Refusing.embedded == 4 * len(TEMPLATES) and other.shape == (4, text.dim)


def test_a_damaged_shipped_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge, "REFERENCE_DIR", tmp_path)
    text_vectors_path("fake-text").write_bytes(b"not an npz")
    assert shipped_text_vectors("fake-text", "0" * 16, (3, 64)) is None


@pytest.mark.real_weights
def test_shipped_minilm_vectors_are_what_minilm_computes() -> None:
    """The packaged bridge's texts ship for all-MiniLM-L6-v2 and match its embeddings (a stale file fails)."""
    from app.references import DEFAULT_SET, find_references
    from app.registry import MINILM_ID, PROFILES
    from app.settings import Settings

    references = find_references(DEFAULT_SET, "efficientnet-lite0")
    assert references is not None
    text = PROFILES["packaged"].text(Settings())
    assert text.model_id == MINILM_ID
    text.load(torch.device("cpu"), torch.float32)
    key = text_key(MINILM_ID, references.captions, ("{}",))
    shipped = shipped_text_vectors(MINILM_ID, key, (len(references.captions), text.dim))
    assert shipped is not None
    rows = np.random.default_rng(0).choice(len(references.captions), 24, replace=False)
    fresh = text.encode([references.captions[int(row)] for row in rows])
    assert (np.sum(fresh * shipped[rows], axis=1)).min() > 0.999


@pytest.mark.real_weights
def test_the_describers_concept_names_ship_so_a_first_start_embeds_nothing(tmp_path: Path) -> None:
    """The text vote's 1,094 concept names ship for all-MiniLM-L6-v2 and match its embeddings."""
    from app.describer import Describer
    from app.registry import MINILM_ID, PROFILES
    from app.settings import Settings

    names = Describer(None).concept_names()
    text = PROFILES["packaged"].text(Settings())
    text.load(torch.device("cpu"), torch.float32)
    shipped = shipped_text_vectors(MINILM_ID, text_key(MINILM_ID, names, ("{}",)), (len(names), text.dim))
    assert shipped is not None
    embedded = label_vectors(text, names, ("{}",), tmp_path)
    assert np.array_equal(embedded, shipped) and not list(tmp_path.iterdir())  # read, not embedded
    rows = np.random.default_rng(0).choice(len(names), 24, replace=False)
    fresh = text.encode([names[int(row)] for row in rows])
    assert (np.sum(fresh * shipped[rows], axis=1)).min() > 0.999
