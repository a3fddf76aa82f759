"""Deterministic fake models: colour 'classifier', bag-of-words text encoder, canned language model."""

from __future__ import annotations

import zlib

import torch
from PIL import Image

from app.encoders.base import ImageEncoder, ImageOutput, LanguageModel, TextEncoder
from app.ocr import ImageText, TextLine
from app.pipeline import Models
from app.preprocessing import ImageSpec, Pixels, tensors_of

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 220),
}


class FakeImageEncoder(ImageEncoder):
    """Mean colour as the feature; logits say how red, green or blue the picture is."""

    model_id = "fake-image"
    spec = ImageSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="crop")
    feature_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.labels = [f"{name} thing" for name in COLOURS]

    def _load(self) -> None:
        """Nothing to read."""

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-channel means (in [-1, 1]) and sharpened logits."""
        means = batch.mean(dim=(2, 3))
        return means + 1.0, means * 8


class FakeLabelledEncoder(FakeImageEncoder):
    """The fake's features from its own 16 px input; labels from a second, 24 px padded input, read
    inverted (a red picture is labelled green or blue), as the packaged Lite0 takes Lite2's labels."""

    label_spec = ImageSpec(size=24, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="pad")

    def __init__(self) -> None:
        super().__init__()
        self.label_model = "fake-labeller"
        self.sizes: set[tuple[int, int]] = set()  # the two input sizes of every batch encoded

    @property
    def specs(self) -> tuple[ImageSpec, ...]:
        """Its own input, then the labeller's."""
        return (self.spec, self.label_spec)

    def encode(self, pixels: Pixels) -> ImageOutput:
        """Features from the first input, inverted colour logits from the second."""
        own, theirs = tensors_of(pixels, 2)
        self.sizes.add((own.shape[-1], theirs.shape[-1]))
        features = super().encode(own).features
        return ImageOutput(features, -theirs.mean(dim=(2, 3)) * 8)

    def warmup(self) -> None:
        """Nothing to warm."""


class FakeTextEncoder(TextEncoder):
    """Hashed bag of words (crc32), so shared words mean similar vectors."""

    model_id = "fake-text"

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim

    def _load(self) -> None:
        """Nothing to read."""

    def _forward(self, texts: list[str]) -> torch.Tensor:
        """Count words into hashed buckets."""
        out = torch.zeros(len(texts), self.dim)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
            out[row, 0] += 1e-3
        return out


class FakeLanguageModel(LanguageModel):
    """Always continues with the same words; counts its calls."""

    model_id = "fake-lm"

    def _load(self) -> None:
        """Nothing to read."""

    @property
    def is_chat(self) -> bool:
        """Behaves like an instruction-tuned model."""
        return True

    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """A fixed continuation (a description of the query in text mode)."""
        return " on a white background" if prefix else "A picture matching the request"


def fake_models(text_dim: int = 64) -> Models:
    """A loaded set of fake models under the profile name 'fake'."""
    models = Models(
        profile="fake", image=FakeImageEncoder(), text=FakeTextEncoder(text_dim), lm=FakeLanguageModel()
    )
    for model in (models.image, models.text, models.lm):
        assert model is not None
        model.load(torch.device("cpu"), torch.float32)
    return models


class InventiveLanguageModel(FakeLanguageModel):
    """Writes invented, partly non-English text and prefers the longest candidate it is asked to rank."""

    model_id = "fake-inventive-lm"

    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """A sentence in the style of a drifting small model."""
        return "A cheetah cattering al-fari in an open desert with a haunted castle."

    def _score(self, texts: list[str]) -> list[float]:
        """Longer is better (the riskiest pick a ranking model could make)."""
        return [float(len(text)) for text in texts]


class CountingReader:
    """A fake reader: counts the pictures it reads, finds "Lantern" in each, and (when asked) is
    interrupted (Ctrl-C) as it starts its `stop_at`-th picture."""

    model_id = "counting"

    def __init__(self, stop_at: int = 0) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def read(self, image: Image.Image) -> ImageText:
        """One line, "Lantern", over the whole picture."""
        if len(self.sizes) + 1 == self.stop_at:
            raise KeyboardInterrupt
        self.sizes.append(image.size)
        return ImageText((TextLine("Lantern", 0.99, ((0, 0), (1, 0), (1, 1), (0, 1))),), gated=True)
