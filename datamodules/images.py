"""Reading an image file as an (H, W, C) uint8 array."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SINGLE_CHANNEL_MODES = ("L", "I", "I;16", "F")


def read_image(path: Path, keep_single_channel: bool) -> np.ndarray:
    """(H, W, C) uint8; grayscale, palette and RGBA become RGB unless a single channel is kept.

    OpenCV decodes JPEGs about twice as fast as Pillow here; Pillow reads what OpenCV cannot and keeps
    single-channel modes."""
    if not keep_single_channel:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with Image.open(path) as image:
        if keep_single_channel and image.mode in SINGLE_CHANNEL_MODES:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))
