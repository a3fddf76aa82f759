"""ImageNet-1k class names in the classifiers' output order (shipped with torchvision, no download)."""

from __future__ import annotations

from functools import cache


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet category names, index = classifier output."""
    from torchvision.models import ResNet50_Weights

    categories: list[str] = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    return tuple(categories)


@cache
def _synonyms() -> dict[str, tuple[str, ...]]:
    """Short name → WordNet lemmas of the same class (timm ships them; e.g. 'tabby' → 'tabby, tabby cat')."""
    try:
        from timm.data.imagenet_info import ImageNetInfo
    except ImportError:  # pragma: no cover - timm is a dependency
        return {}
    descriptions: list[str] = list(ImageNetInfo().label_descriptions())
    return {
        name: tuple(part.strip() for part in text.split(","))
        for name, text in zip(imagenet_labels(), descriptions, strict=True)
    }


def readable_label(name: str) -> str:
    """The most explicit everyday lemma containing the short name ('tabby' → 'tabby cat')."""
    lemmas = _synonyms().get(name, ())
    words = set(name.lower().split())
    candidates = [lemma for lemma in lemmas if words <= set(lemma.lower().split())]
    return max(candidates, key=len) if candidates else name
