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
        data = np.fromfile(path, dtype=np.uint8)  # raises FileNotFoundError itself
        if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-32:].tobytes():  # JPEG by content
            # OpenCV decodes a truncated JPEG without complaint, the missing part grey: refuse it instead
            raise UnreadableImage(path, EOFError("no end-of-image marker: the file is truncated"))
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(path) as image:
            if keep_single_channel and image.mode in SINGLE_CHANNEL_MODES:
                return np.array(image.convert("L"))[..., None]
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated files, bad headers
        raise UnreadableImage(path, error) from error


class UnreadableImage(ValueError):
    """A file that should be an image and cannot be decoded: named, with what to do."""

    def __init__(self, path: Path, error: BaseException, kind: str = "image") -> None:
        self.path = Path(path)
        super().__init__(f"{kind} {path} cannot be decoded ({type(error).__name__}: {str(error)[:160]}); the file is "
                         f"corrupt, truncated or not an image. Replace it (re-export or re-download), or remove its id "
                         f"from the split file; dataset.check_images=true finds every such file before training")
