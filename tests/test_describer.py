"""The describer says only what its evidence supports: labels, their WordNet kinds, confident scenes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app import registry
from app.describer import FUNCTION_WORDS, Describer, dictionary
from app.labels import words
from app.main import create_app
from app.pipeline import Models
from app.registry import load_in_background
from app.settings import Settings
from tests.conftest import png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS, FakeImageEncoder, FakeLanguageModel, FakeTextEncoder, InventiveLanguageModel


@pytest.fixture
def describer() -> Describer:
    """A describer whose language model invents freely when asked to write and ranks recklessly."""
    lm = InventiveLanguageModel()
    lm.load(torch.device("cpu"), torch.float32)
    return Describer(lm)


def content(sentence: str) -> set[str]:
    """The sentence's words that are not articles, prepositions, conjunctions or hedges."""
    return set(words(sentence)) - FUNCTION_WORDS


def test_a_confident_tabby_is_a_cat_and_nothing_else(describer: Describer) -> None:
    sentence = describer.describe([("tabby", 0.9), ("Egyptian cat", 0.04), ("lynx", 0.02)])
    assert "cat" in content(sentence.text)
    assert content(sentence.text) <= {"tabby", "cat"}, sentence.text
    assert sentence.confidence == pytest.approx(0.9)
    assert [e.labels for e in sentence.evidence] == [("tabby",)]


def test_three_disagreeing_dog_breeds_give_a_dog(describer: Describer) -> None:
    sentence = describer.describe([("beagle", 0.3), ("basset", 0.28), ("bloodhound", 0.25), ("lynx", 0.02)])
    assert content(sentence.text) == {"dog"}, sentence.text
    assert sentence.evidence[0].source == "kind"
    assert set(sentence.evidence[0].labels) == {"beagle", "basset", "bloodhound"}


def test_a_confident_scene_appears_and_a_weak_one_does_not(describer: Describer) -> None:
    confident = describer.describe([("tabby", 0.6), ("seashore", 0.35)])
    weak = describer.describe([("tabby", 0.6), ("seashore", 0.05)])
    assert "seashore" in content(confident.text), confident.text
    assert "seashore" not in content(weak.text), weak.text
    assert content(weak.text) <= {"tabby", "cat"}


def test_an_unsure_subject_is_hedged(describer: Describer) -> None:
    sentence = describer.describe([("tailed frog", 0.3), ("mud turtle", 0.04)])
    assert set(words(sentence.text)) & {"probably", "likely", "perhaps"}, sentence.text
    assert "frog" in content(sentence.text)


def test_the_language_model_cannot_add_a_word_outside_the_evidence(describer: Describer) -> None:
    cases = [
        [("tailed frog", 0.3), ("mud turtle", 0.2)],
        [("tabby", 0.6), ("seashore", 0.35), ("bicycle-built-for-two", 0.31)],
        [("golden retriever", 0.4), ("tennis ball", 0.35)],
    ]
    assert describer.lm is not None
    calls = describer.lm.calls
    for labels in cases:
        sentence = describer.describe(labels)
        evidence_words = {w for e in sentence.evidence for w in words(e.phrase)}
        assert content(sentence.text) <= evidence_words, (sentence.text, evidence_words)
        assert not {"cheetah", "desert", "castle"} & set(words(sentence.text))
    assert describer.lm.calls > calls  # it was asked to rank, and its pick stayed within the evidence


def test_text_mode_never_returns_a_non_word(describer: Describer) -> None:
    text = describer.from_query("a wild animal")
    assert text.endswith(".") and "cattering" not in text and "fari" not in text
    assert all(word in dictionary() for word in words(text)), text


def test_describe_is_503_with_retry_after_while_the_language_model_loads(
    settings: Settings, models: Models, tmp_path: Path
) -> None:
    loading = Models(models.profile, models.image, models.text, FakeLanguageModel())  # never loaded
    app = create_app(settings, factory=service_factory(loading, tmp_path / "cache"))
    with TestClient(app) as client:
        wait_ready(client)
        assert client.post("/search", json={"query": "red thing"}).status_code == 200
        upload = {"image": ("r.png", png_bytes(COLOURS["red"]), "image/png")}
        for response in (
            client.post("/describe", files=upload),
            client.post("/describe", json={"query": "x"}),
        ):
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert "loading" in response.json()["detail"]
        assert client.get("/readyz").json()["describe"] == "loading"
        assert loading.lm is not None
        loading.lm.load(torch.device("cpu"), torch.float32)
        assert client.post("/describe", files=upload).status_code == 200
        assert client.get("/readyz").json()["describe"] == "ready"


class BrokenLanguageModel(FakeLanguageModel):
    """A language model whose weights cannot be read."""

    def _load(self) -> None:
        """Fail as a missing file would."""
        raise RuntimeError("no weights at /nowhere")


def test_a_language_model_that_fails_in_the_background_says_why(
    settings: Settings, models: Models, tmp_path: Path
) -> None:
    broken = BrokenLanguageModel()
    load_in_background(broken, torch.device("cpu"), torch.float32).join(10)
    assert not broken.loaded and broken.error == "no weights at /nowhere"
    failed = Models(models.profile, models.image, models.text, broken)
    with TestClient(create_app(settings, factory=service_factory(failed, tmp_path / "cache"))) as client:
        wait_ready(client)
        response = client.post("/describe", json={"query": "a cat"})
        assert response.status_code == 503 and "Retry-After" not in response.headers
        assert "the language model failed to load: no weights at [server path]" in response.json()["detail"]
        assert client.get("/readyz").json()["describe"] == "failed"


class WatchfulLanguageModel(FakeLanguageModel):
    """Records whether the encoders had finished loading when its own load began."""

    def __init__(self, encoders: tuple[FakeImageEncoder, FakeTextEncoder]) -> None:
        super().__init__()
        self.encoders = encoders
        self.saw_loaded: list[bool] = []

    def _load(self) -> None:
        """Note the encoders' state, as a real load would race them for transformers' imports."""
        self.saw_loaded = [encoder.loaded for encoder in self.encoders]


def test_the_background_load_starts_once_the_encoders_have_loaded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' lazy imports are not thread-safe: the LM's thread must not race the encoders."""
    encoders = (FakeImageEncoder(), FakeTextEncoder())
    lm = WatchfulLanguageModel(encoders)
    monkeypatch.setattr(registry, "create_models", lambda *args, **kwargs: Models("fake", *encoders, lm))
    registry.prepare(settings, "packaged", lm_in_background=True)
    deadline = time.monotonic() + 10
    while not lm.loaded:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lm.saw_loaded == [True, True]
