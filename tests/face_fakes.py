"""Fakes for the faces stage: portraits whose face is a coloured square (its colour is who it is), and
a FaceReading that finds that square without any model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from app.faces import DIMENSION, FoundFace

BACKGROUND = (128, 128, 128)  # a grey picture holds no face
ALICE = (220, 30, 30)
ALICE_AGAIN = (205, 45, 40)  # Alice in another light: 0.09 from ALICE, the same person
BOB = (30, 30, 220)
CAROL = (30, 200, 30)


def portrait(path: Path, colour: tuple[int, int, int] | None, size: tuple[int, int] = (120, 90)) -> Path:
    """A grey picture whose middle quarter is `colour` (a face; None: no face), saved at `path`."""
    picture = Image.new("RGB", size, BACKGROUND)
    if colour is not None:
        width, height = size
        ImageDraw.Draw(picture).rectangle(
            (width // 4, height // 4, width // 4 + width // 2 - 1, height // 4 + height // 2 - 1), fill=colour
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, quality=95)
    return path


def descriptor(colour: tuple[int, int, int]) -> np.ndarray:
    """A fake descriptor: the colour's channels over 255 in the first three numbers."""
    found = np.zeros(DIMENSION, dtype=np.float32)
    found[:3] = np.asarray(colour, dtype=np.float32) / 255.0
    return found


class ColourFaces:
    """Finds the coloured square in the middle of a picture (the face), describes it by its colour,
    counts the pictures it reads and (when asked) is interrupted (Ctrl-C) at its `stop_at`-th."""

    model_id = "colour faces"
    decode_side = 720

    def __init__(self, stop_at: int = 0) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def read(self, image: Image.Image) -> list[FoundFace]:
        """The face in the middle quarter, unless the middle is grey."""
        if len(self.sizes) + 1 == self.stop_at:
            raise KeyboardInterrupt
        self.sizes.append(image.size)
        width, height = image.size
        colour = image.convert("RGB").getpixel((width // 2, height // 2))
        assert isinstance(colour, tuple)
        if max(colour) - min(colour) < 20:
            return []
        box = (width // 4, height // 4, width // 2, height // 2)
        return [FoundFace(box, 1.0, descriptor((int(colour[0]), int(colour[1]), int(colour[2]))))]
