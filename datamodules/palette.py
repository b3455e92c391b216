"""Class colours: the PASCAL VOC colour map (the palette VOC's mask PNGs carry, used to read and to write masks, and a
distinct colour per index for any dataset) and the published palettes of other benchmarks, by name."""
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


# Cityscapes' colours of its 19 train ids (cityscapesscripts/helpers/labels.py)
CITYSCAPES = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
              (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
              (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]


def cityscapes_palette() -> np.ndarray:
    """Cityscapes' colours for its train ids, the VOC colour map beyond them (255, ignored: black in neither)."""
    palette = voc_palette()
    palette[: len(CITYSCAPES)] = CITYSCAPES
    palette[255] = 0
    return palette


# dataset.palette: the colours predict.py writes masks and overlays in (ADE20K and COCO-Stuff use VOC's colour map)
PALETTES = {"voc": voc_palette, "cityscapes": cityscapes_palette}


def palette_of(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of the palette registered as ``name``."""
    if name not in PALETTES:
        raise ValueError(f"dataset.palette={name!r}: choose one of {', '.join(PALETTES)}")
    return PALETTES[name]()
