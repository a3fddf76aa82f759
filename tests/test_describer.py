"""The describer names what its evidence is sure of, in plain words, and says nothing without evidence;
text mode keeps the query and invents nothing; an indexed image is described as its upload is."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app import concepts, registry
from app.build import BuildConfig, build_index
from app.describer import FUNCTION_WORDS, UNSURE, Describer, Sentence, Sight, dictionary
from app.labels import words
from app.looks import Look
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.registry import load_in_background
from app.settings import Settings
from app.sources import FolderSource
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


def said(describer: Describer, labels: list[tuple[str, float]], *looks: Look) -> Sentence:
    """The describer's sentence for a label distribution (and what the picture looks like)."""
    return describer.describe(Sight(labels, looks=looks))


def test_five_cat_classes_sharing_the_mass_say_a_cat(describer: Describer) -> None:
    cats = [
        ("tabby", 0.2),
        ("tiger cat", 0.15),
        ("Persian cat", 0.15),
        ("Siamese cat", 0.15),
        ("Egyptian cat", 0.15),
    ]
    sentence = said(describer, [*cats, ("lynx", 0.02)])
    assert sentence.text == "A cat."
    assert sentence.evidence[0].source == "kind" and set(sentence.evidence[0].labels) <= {c for c, _ in cats}
    assert sentence.confidence == pytest.approx(0.82, abs=0.01)


def test_one_sure_class_is_named_by_itself(describer: Describer) -> None:
    assert said(describer, [("Siamese cat", 0.9), ("tabby", 0.05)]).text == "A Siamese cat."


def test_a_bird_is_refined_to_the_owl_that_holds_most_of_its_mass(describer: Describer) -> None:
    birds = [("great grey owl", 0.28), ("bald eagle", 0.1), ("kite", 0.08), ("vulture", 0.04), ("jay", 0.02)]
    sentence = said(describer, [*birds, ("tabby", 0.03)])
    assert sentence.text == "A bird, probably an owl.", sentence.text
    assert [e.phrase for e in sentence.evidence] == ["bird", "owl"]


def test_animals_of_many_kinds_are_an_animal_and_unrelated_things_give_up(describer: Describer) -> None:
    animals = [("tabby", 0.13), ("beagle", 0.13), ("goldfish", 0.13), ("jay", 0.13), ("green mamba", 0.13)]
    assert said(describer, animals).text == "An animal."
    things = [("umbrella", 0.06), ("goldfish", 0.06), ("mailbox", 0.06), ("broom", 0.06), ("toaster", 0.06)]
    assert said(describer, things).text == UNSURE


def test_a_picture_the_classifier_misses_is_named_by_its_bridged_vector_with_that_evidence(
    describer: Describer,
) -> None:
    """A drawing the classifier spreads thin over every class: "A snail." when its bridged vector sits on
    the word "snail" in text space, said with a "text" evidence item; without the vector, no snail."""
    names = [concept.name for concept in describer.hierarchy.concepts]
    vectors = np.random.default_rng(0).normal(size=(len(names), 32)).astype(np.float32)
    describer.concept_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    spread = [(label, 0.001) for label in describer.labels]
    near_snail = describer.concept_vectors[names.index("snail")]
    sentence = describer.describe(Sight(spread, vector=near_snail))
    assert sentence.text == "A snail."
    assert [(e.phrase, e.source) for e in sentence.evidence if e.source == "text"] == [("snail", "text")]
    assert "snail" not in describer.describe(Sight(spread)).text


def test_names_are_the_words_a_person_uses_with_the_right_article(describer: Describer) -> None:
    assert said(describer, [("ice bear", 0.9)]).text == "A polar bear."
    assert said(describer, [("Madagascar cat", 0.9)]).text == "A ring-tailed lemur."
    assert said(describer, [("koala", 0.9)]).text == "A koala."
    assert said(describer, [("ox", 0.9)]).text == "An ox."
    assert said(describer, [("hay", 0.9)]).text == "Hay."  # a mass noun takes no article
    assert said(describer, [("jean", 0.9)]).text == "Jeans, a kind of clothing."  # nor does a plural
    assert said(describer, [("sunglass", 0.9)]).text == "Sunglasses."


def test_every_word_added_has_evidence(describer: Describer) -> None:
    photo, red = Look("medium", "photo", 0.9, "pixels"), Look("colour", "mostly red", 0.7, "pixels")
    cases = [
        said(describer, [("tailed frog", 0.3), ("mud turtle", 0.2)], photo),
        said(describer, [("tabby", 0.6), ("seashore", 0.35), ("bicycle-built-for-two", 0.31)], photo, red),
        said(describer, [("golden retriever", 0.4), ("tennis ball", 0.35)], red),
        said(describer, [("umbrella", 0.05), ("broom", 0.05)], photo),
    ]
    for sentence in cases:
        evidence_words = {w for e in sentence.evidence for w in words(e.phrase)}
        assert content(sentence.text) <= evidence_words, (sentence.text, evidence_words)
        assert not {"cheetah", "desert", "castle"} & set(words(sentence.text))
    assert cases[1].text == "A mostly red photo of a tabby cat on a beach and a tandem bicycle."
    assert {e.source for e in cases[1].evidence} >= {"pixels", "label", "scene"}
    assert cases[3].text == "A photo of something the models cannot name with confidence."


def test_a_picture_says_what_the_index_read_in_it_before_its_pixels(describer: Describer) -> None:
    sight = Sight([("envelope", 0.7)], looks=(Look("medium", "photo", 0.9, "pixels"),),
                  known=(Look("medium", "document", 1.0, "index"),))  # fmt: skip
    assert describer.describe(sight).text == "A document of an envelope."


class DriftingLanguageModel(FakeLanguageModel):
    """Continues a sentence as a small model drifts: it invents a named, aged pet, then a person."""

    model_id = "fake-drifting-lm"

    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """Inventions after a clause or two of plain words, as SmolLM2 writes them."""
        if "car" in prefix:
            return " parked on a quiet street. My neighbour Bob bought it in 1998."
        if "dog" in prefix:
            return " named Max, my trusty 10-year-old Labrador"
        return " while she was wearing a bright blue dress"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a red car", "A red car parked on a quiet street."),
        ("dog playing in the snow", "A dog playing in the snow."),
        ("a child riding a bicycle", "A child riding a bicycle."),
        ("sunflowers", "A photo of sunflowers."),
        ("an old lighthouse at sunset", "An old lighthouse at sunset."),
        ("mountains reflected in a lake", "Mountains reflected in a lake."),
        ("cat curled on a sofa", "A cat curled on a sofa."),
    ],
)
def test_text_mode_keeps_the_query_and_completes_it_without_inventing(query: str, expected: str) -> None:
    lm = DriftingLanguageModel()
    lm.load(torch.device("cpu"), torch.float32)
    calls = lm.calls
    text = Describer(lm).from_query(query)
    assert text == expected
    assert lm.calls == calls + 1  # checked and completed once, no retry


def test_text_mode_never_returns_a_non_word(describer: Describer) -> None:
    text = describer.from_query("a wild animal")
    assert text == "A wild animal."
    assert all(word in dictionary() for word in words(text)), text


def test_an_indexed_image_is_described_as_its_upload_is(
    gallery: Path, pipeline: Pipeline, models: Models, tmp_path: Path
) -> None:
    """Described by id, an image gets the sentence, confidence and labels its upload gets, though the
    index stored one label of it (label_k=1); without its original, it falls back to those."""
    index_dir = tmp_path / "index"
    config = BuildConfig(pca_dim=0, workers=0, label_k=1)
    build_index(FolderSource(gallery), index_dir, pipeline, config, progress=False)
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path / "cache", device="cpu")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path / "cache"))) as client:
        wait_ready(client)
        results = client.get("/search", params={"q": "thing", "top_k": 10}).json()["results"]
        assert len(results) == 3
        for hit in results:
            original = gallery / hit["source"]
            upload = client.post("/describe", files={"image": (original.name, original.read_bytes())}).json()
            by_id = client.post("/describe", json={"image_id": hit["id"]}).json()
            for key in ("description", "confidence", "labels", "evidence"):
                assert by_id[key] == upload[key], key
            assert len(by_id["labels"]) == 3
            assert any(e["source"] == "pixels" for e in by_id["evidence"]), by_id
        for hit in results:
            (gallery / hit["source"]).rename(tmp_path / hit["id"])
        try:
            gone = client.post("/describe", json={"image_id": results[0]["id"]})
            assert gone.status_code == 200 and gone.json()["description"].endswith(".")
            assert len(gone.json()["labels"]) == 1
        finally:
            for hit in results:
                (tmp_path / hit["id"]).rename(gallery / hit["source"])


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
    load_in_background(broken, torch.device("cpu"), torch.float32).join(60)
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


class WordsWatchingLanguageModel(FakeLanguageModel):
    """Records whether inflect's engine was ready when its own load began."""

    def _load(self) -> None:
        """Note what the describer's first sentence would still have to import."""
        self.words_ready: bool = concepts._engine.cache_info().currsize == 1
        super()._load()


def test_the_describers_words_are_ready_before_the_language_model_counts_as_loaded() -> None:
    """The first /describe after start-up does not wait seconds for inflect's import (typeguard)."""
    concepts._engine.cache_clear()
    model = WordsWatchingLanguageModel()
    load_in_background(model, torch.device("cpu"), torch.float32).join(60)
    assert model.loaded and model.words_ready
