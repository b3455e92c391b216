"""Reading a mask file as class indices, whatever way a labelling tool saved it."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from .images import UnreadableImage
from .palette import voc_palette


@lru_cache(maxsize=1)
def _palette_codes() -> dict[int, int]:
    """VOC colour (packed as 0xRRGGBB) -> class index, for RGB masks drawn in the VOC palette."""
    palette = voc_palette().astype(np.int64)
    codes = palette[:, 0] << 16 | palette[:, 1] << 8 | palette[:, 2]
    return {int(code): index for index, code in enumerate(codes)}


def _rgb_to_indices(rgb: np.ndarray, path: Path) -> np.ndarray:
    codes = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
    lookup = _palette_codes()
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [c for c in unique.tolist() if c not in lookup]
    if unknown:
        colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:5]]
        raise ValueError(
            f"mask {path} is an RGB image with {len(unknown)} colours outside the VOC palette, e.g. {colours}; "
            f"save masks as palette or 8-bit grayscale PNGs of class indices (or RGB in the VOC palette)"
        )
    return np.array([lookup[c] for c in unique.tolist()], dtype=np.uint8)[inverse].reshape(codes.shape)


def read_mask(path: Path, value_map: Mapping[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 class indices: palette or grayscale PNGs as stored, RGB(A) through the VOC palette.

    ``value_map`` renames stored values first, e.g. ``{255: 1}`` for binary masks saved as 0/255.
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("P", "L"):
                mask = np.array(image)
            elif image.mode in ("RGB", "RGBA"):
                mask = _rgb_to_indices(np.array(image.convert("RGB")), path)
            else:
                raise ValueError(
                    f"mask {path} has mode {image.mode}; save masks as palette or 8-bit grayscale PNGs of class indices"
                )
    except (FileNotFoundError, ValueError):
        raise
    except (OSError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated files
        raise UnreadableImage(path, error, kind="mask") from error
    if value_map:
        lookup = np.arange(256, dtype=np.uint8)
        for stored, label in value_map.items():
            lookup[int(stored)] = int(label)
        mask = lookup[mask]
    return mask
