"""Write app/data/imagenet.json: ImageNet-1k names (torchvision), WordNet lemmas and definitions (timm).

The service reads the JSON so that it never imports torchvision or timm at start-up (seconds on a
small CPU); tests/test_labels.py checks the file still equals what the libraries ship.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "app" / "data" / "imagenet.json"


def from_libraries() -> dict[str, list[str]]:
    """The three lists, in classifier output order, read from torchvision and timm."""
    from timm.data.imagenet_info import ImageNetInfo
    from torchvision.models import ResNet50_Weights

    info = ImageNetInfo()
    return {
        "labels": list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"]),
        "lemmas": list(info.label_descriptions()),
        "definitions": [text.split(": ", 1)[-1] for text in info.label_descriptions(detailed=True)],
    }


def main() -> int:
    """Regenerate the file."""
    TARGET.write_text(json.dumps(from_libraries(), indent=0, ensure_ascii=False) + "\n")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
