"""The shipped ImageNet tables and the hand-written tensor conversion match the libraries they replace."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image, ImageOps

from app.labels import imagenet_definitions, imagenet_labels, lemma_sets, readable_label
from app.preprocessing import ImageSpec, Preprocessor
from scripts.imagenet_names import TARGET, from_libraries


def test_shipped_imagenet_tables_equal_torchvision_and_timm() -> None:
    assert json.loads(TARGET.read_text()) == from_libraries()
    assert len(imagenet_labels()) == len(imagenet_definitions()) == len(lemma_sets()) == 1000
    assert readable_label("tabby") == "tabby cat"


def test_preprocessing_equals_torchvision_transforms() -> None:
    from torchvision.transforms import v2

    spec = ImageSpec(size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    reference = v2.Compose(
        [
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(spec.mean), list(spec.std)),
        ]
    )
    fitted = ImageOps.pad(picture, (32, 32), method=Image.Resampling.BICUBIC, color=(255, 255, 255))
    assert torch.allclose(Preprocessor(spec)(picture), reference(fitted), atol=1e-6)
