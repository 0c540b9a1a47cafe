"""Reading camera images from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file is missing or not a readable image."""


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, writable."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
