"""The PASCAL VOC colour map: the palette VOC's mask PNGs carry, used to read and to write masks."""
from __future__ import annotations

import numpy as np


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (class i -> RGB), the palette VOC's mask PNGs carry."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    return palette
