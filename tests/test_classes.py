"""A query naming a kind of thing ("an animal", "a bird") finds the pictures classified as that kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.assembly import service_over
from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.encoders.base import ImageEncoder
from app.index import Index
from app.labels import ClassHint, class_hint, imagenet_labels
from app.pipeline import Models, Pipeline
from app.query import CompoundQuery, Part
from app.ranking import rerank_by_class
from app.registry import make_bridge
from app.service import SearchRequest
from app.sources import FolderSource
from tests.fakes import FakeImageEncoder, FakeTextEncoder

# What the fake classifier sees in each colour: a car, a dog breed, a bird.
SEEN = {(220, 20, 20): "sports car", (20, 200, 20): "beagle", (20, 20, 220): "goldfinch"}


class ImageNetColourEncoder(FakeImageEncoder):
    """The colour classifier over ImageNet's labels: red → sports car, green → beagle, blue → goldfinch."""

    model_id = "fake-imagenet-image"

    def __init__(self) -> None:
        super().__init__()
        self.labels = labels = list(imagenet_labels())
        self._rows = [labels.index(name) for name in SEEN.values()]

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean colour; logits 12 × the mean of each channel on its class, 0 elsewhere."""
        features, colour_logits = super()._forward(batch)
        assert colour_logits is not None
        logits = torch.zeros(len(batch), len(imagenet_labels()))
        logits[:, self._rows] = colour_logits * 1.5
        return features, logits


def imagenet_models() -> Models:
    """The fake text encoder with the ImageNet colour classifier."""
    image: ImageEncoder = ImageNetColourEncoder()
    models = Models(profile="fake", image=image, text=FakeTextEncoder(), lm=None)
    for model in (models.image, models.text):
        model.load(torch.device("cpu"), torch.float32)
    return models


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Models, Path, Path]:
    """An index of a red, a green and a blue picture, built with the ImageNet colour classifier."""
    root = tmp_path_factory.mktemp("classes")
    folder = root / "pictures"
    folder.mkdir()
    for colour, name in SEEN.items():
        Image.new("RGB", (40, 30), colour).save(folder / f"{name.replace(' ', '-')}.png")
    models = imagenet_models()
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(references=""), root / "cache"))
    build_index(
        FolderSource(folder), root / "index", pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    return models, root / "index", root / "cache"


def ranked(served: tuple[Models, Path, Path], query: str, class_weight: float | None = None) -> list[str]:
    """Sources ranked for a text query through the service (the class re-rank off with weight 0)."""
    models, index_dir, cache = served
    service = service_over(Index(index_dir), models, cache)
    try:
        if class_weight is not None:
            service.pipeline.bridge.class_weight = class_weight
        return [hit.record.source for hit in service.search_text(query, top_k=3)]
    finally:
        service.close()


def test_a_query_naming_a_kind_finds_what_the_classifier_put_below_it() -> None:
    animal = class_hint("an animal")
    assert animal is not None and animal.noun == "animal"
    assert {"beagle", "goldfinch", "tabby"} <= animal.labels and "sports car" not in animal.labels
    birds = class_hint("Some birds.")
    assert birds is not None and "goldfinch" in birds.labels and "beagle" not in birds.labels
    car = class_hint("A red sports car with a driver.")
    assert car is not None and car.labels == {"sports car"}  # the longest name, not every car
    assert class_hint("sunset over the hills") is None  # no ImageNet class below a sunset


def test_an_animal_ranks_the_dog_and_the_bird_above_the_car(served: tuple[Models, Path, Path]) -> None:
    assert ranked(served, "an animal")[-1] == "sports-car.png"
    assert ranked(served, "a bird")[0] == "goldfinch.png"
    assert ranked(served, "a dog")[0] == "beagle.png"
    assert ranked(served, "a vehicle")[0] == "sports-car.png"
    # The words alone (the bag-of-words fake knows nothing of kinds) put the car first for "a bird".
    assert ranked(served, "a bird", class_weight=0.0)[0] == "sports-car.png"
    assert ranked(served, "a vehicle", class_weight=0.0)[-1] == "sports-car.png"


def test_hybrid_search_ranks_kinds_the_same_way(served: tuple[Models, Path, Path]) -> None:
    models, index_dir, cache = served
    service = service_over(Index(index_dir), models, cache)
    try:
        request = SearchRequest(CompoundQuery(positive=(Part("a bird"),)), mode="hybrid", top_k=3)
        assert service.search(request).hits[0].record.source == "goldfinch.png"
    finally:
        service.close()


def test_the_class_rerank_keeps_scores_falling_and_the_rows_past_its_pool() -> None:
    hint = ClassHint("bird", frozenset({"goldfinch"}), weight=1.0)
    ranked_rows = [(row, 0.9 - 0.001 * row) for row in range(300)]
    stored = {150: [("goldfinch", 0.8)], 250: [("goldfinch", 0.99)]}
    fused = rerank_by_class(
        ranked_rows,
        hint,
        lambda rows, names: [sum(p for label, p in stored.get(row, []) if label in names) for row in rows],
    )
    assert fused[0][0] == 150  # in the pool of 200: lifted to the top
    assert [row for row, _ in fused].index(250) == 250  # past the pool: left in place
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
