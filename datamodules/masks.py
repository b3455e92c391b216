"""Reading a mask file as class indices, whatever way a labelling tool saved it: palette or grayscale PNGs of indices
(8 or 16 bits), 16-bit or integer TIFFs, and RGB masks in a colour table (VOC's palette by default, or the dataset's
own: ``class_colors``, ``class_colors.txt``, CVAT's ``labelmap.txt``)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tifffile
from PIL import Image

from .images import UnreadableImage
from .palette import voc_palette

TIFF_SUFFIXES = (".tif", ".tiff")
INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I")  # PIL's 16- and 32-bit integer images (16-bit PNGs)


def pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) colours as one integer each (0xRRGGBB)."""
    rgb = np.asarray(rgb).astype(np.int64)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


@lru_cache(maxsize=1)
def _voc_codes() -> tuple[tuple[int, int], ...]:
    """VOC colour code -> class index, for RGB masks drawn in the VOC palette."""
    return tuple((int(code), index) for index, code in enumerate(pack(voc_palette())))


def colour_table(colors: Sequence[Sequence[int]], names: Sequence[str] | None = None) -> dict[int, int]:
    """Class colours (one [r, g, b] per class, in class order) as code -> class; two classes of one colour are
    refused, since a mask could not tell them apart."""
    table: dict[int, int] = {}
    for index, colour in enumerate(colors):
        if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
            raise ValueError(f"class colour {list(colour)} of class {index}: give three values 0-255 (r, g, b)")
        code = int(pack(np.array(colour)))
        if code in table:
            which = names or [f"class {i}" for i in range(len(colors))]
            raise ValueError(f"classes {which[table[code]]} and {which[index]} share the colour {list(colour)}; give "
                             f"each class its own colour in dataset.class_colors or class_colors.txt")
        table[code] = index
    return table


def read_class_colors(root: Path) -> tuple[list[str], list[list[int]]] | None:
    """``class_colors.txt`` (``name r g b`` or ``name:r,g,b`` per line) or CVAT's ``labelmap.txt`` (``name:r,g,b::``,
    ``#`` comments) in ``root``: the class names and colours, in class order; None when neither file is there."""
    for name in ("class_colors.txt", "labelmap.txt"):
        path = root / name
        if not path.is_file():
            continue
        names, colours = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if ":" in line:  # CVAT: name:r,g,b:parts:actions
                label, _, rest = line.partition(":")
                values = rest.split(":")[0].split(",")
            else:  # name r g b (a name may hold spaces)
                words = line.split()
                label, values = " ".join(words[:-3]), words[-3:]
            values = [v.strip() for v in values]
            if not label or len(values) != 3 or not all(v.isdigit() for v in values):
                raise ValueError(f"{path}:{number}: '{line}' is not 'name r g b' or 'name:r,g,b' (CVAT's labelmap.txt)")
            names.append(label.strip())
            colours.append([int(v) for v in values])
        return names, colours
    return None


def _rgb_to_indices(rgb: np.ndarray, path: Path, colours: Mapping[int, int] | None,
                    names: Sequence[str] | None) -> np.ndarray:
    codes = pack(rgb)
    lookup = dict(colours) if colours else dict(_voc_codes())
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [c for c in unique.tolist() if c not in lookup]
    if unknown:
        colour = [(unknown[0] >> 16) & 255, (unknown[0] >> 8) & 255, unknown[0] & 255]
        if colours is None:
            raise ValueError(
                f"mask {path} is an RGB image with {len(unknown)} colours outside the VOC palette, e.g. {colour}; "
                f"give the dataset's colours (dataset.class_colors=[[r,g,b], ...] in class order, or a class_colors.txt "
                f"or CVAT's labelmap.txt beside class_names.txt), or save masks as PNGs of class indices")
        known = np.array([[(c >> 16) & 255, (c >> 8) & 255, c & 255] for c in lookup], dtype=np.int64)
        closest = int(((known - np.array(colour)) ** 2).sum(1).argmin())
        nearest = list(lookup.values())[closest]
        label = names[nearest] if names and nearest < len(names) else f"class {nearest}"
        raise ValueError(f"mask {path} holds the colour {colour}, which is no class's colour ({len(unknown)} such "
                         f"colours; the nearest class is {label}, {known[closest].tolist()}); "
                         f"add it to the colour table or repaint those pixels (anti-aliased edges: export without "
                         f"smoothing)")
    dtype = np.uint8 if max(lookup.values(), default=0) < 256 else np.uint16
    return np.array([lookup[c] for c in unique.tolist()], dtype=dtype)[inverse].reshape(codes.shape)


_LOOKUPS: dict[int, tuple[Mapping[int, int], np.ndarray]] = {}


def value_lookup(value_map: Mapping[int, int]) -> np.ndarray:
    """``value_map`` as an array indexed by stored value (identity elsewhere), built once per map."""
    cached = _LOOKUPS.get(id(value_map))
    if cached is not None and cached[0] is value_map:
        return cached[1]
    size = max(256, max((int(k) for k in value_map), default=0) + 1)
    top = max([size - 1, *(int(v) for v in value_map.values())])
    lookup = np.arange(size, dtype=np.uint8 if top < 256 else np.uint16)
    for stored, label in value_map.items():
        lookup[int(stored)] = int(label)
    _LOOKUPS[id(value_map)] = (value_map, lookup)
    return lookup


def _integers(array: np.ndarray, path: Path) -> np.ndarray:
    """A single-channel integer mask as uint8 (values < 256) or uint16; anything else refused by name."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"mask {path} is {array.dtype} with shape {array.shape}; a mask holds one integer class per "
                         f"pixel (8- or 16-bit)")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"mask {path} holds values {int(array.min())}..{int(array.max())}; classes are 0..65535")
    return array.astype(np.uint8 if array.size == 0 or array.max() < 256 else np.uint16, copy=False)


def read_mask(path: Path, value_map: Mapping[int, int] | None = None, colours: Mapping[int, int] | None = None,
              names: Sequence[str] | None = None) -> np.ndarray:
    """(H, W) class indices, uint8 (or uint16 where a value passes 255): palette, grayscale and 16-bit PNGs and
    integer TIFFs as stored, RGB(A) through ``colours`` (code -> class, see ``colour_table``; default VOC's palette).

    ``value_map`` renames stored values first, e.g. ``{255: 1}`` for binary masks saved as 0/255.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            mask = tifffile.imread(path)
            mask = _rgb_to_indices(mask[..., :3], path, colours, names) if mask.ndim == 3 and mask.shape[-1] in (3, 4) \
                else _integers(mask, path)
        else:
            with Image.open(path) as image:
                if image.mode in ("P", "L"):
                    mask = np.array(image)
                elif image.mode in INTEGER_MODES:
                    mask = _integers(np.array(image), path)
                elif image.mode in ("RGB", "RGBA"):
                    mask = _rgb_to_indices(np.array(image.convert("RGB")), path, colours, names)
                else:
                    raise ValueError(f"mask {path} has mode {image.mode}; save masks as palette, 8- or 16-bit "
                                     f"grayscale PNGs of class indices, or RGB in the dataset's class colours")
    except (FileNotFoundError, ValueError):
        raise
    except (OSError, SyntaxError, tifffile.TiffFileError) as error:  # PIL: UnidentifiedImageError, truncated files
        raise UnreadableImage(path, error, kind="mask") from error
    if value_map:
        lookup = value_lookup(value_map)
        if mask.size and int(mask.max()) >= len(lookup):
            beyond = np.arange(len(lookup), int(mask.max()) + 1) + getattr(value_map, "beyond", 0)
            lookup = np.concatenate([lookup.astype(np.uint16), beyond.astype(np.uint16)])
            keep = getattr(value_map, "keep", None)
            if keep is not None and keep < len(lookup):
                lookup[keep] = keep
        mask = lookup[mask]
    return mask
