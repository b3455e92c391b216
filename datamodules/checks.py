"""Refuse, before training, what would train wrongly; each message names the file and the fix."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import tifffile

from .images import UnreadableImage, image_size, read_image
from .masks import read_mask
from .progress import progress


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """Indices of at most ``limit`` items spread over ``count`` (all of them when ``limit`` is None)."""
    if limit is None or count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit)})


def header_size(path: Path, kind: str) -> tuple[int, int]:
    try:
        return image_size(path)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, KeyError, tifffile.TiffFileError) as error:  # not an image at all
        raise UnreadableImage(path, error, kind) from error


def check_decodable(images: Sequence[Sequence[Path]], masks: Sequence[Path], keep_single_channel: bool,
                    reader: Callable[..., np.ndarray] = read_mask) -> None:
    """Every image and mask decodes in full (``dataset.check_images=true``): a truncated JPEG passes the header
    check and would otherwise stop training only when first read."""
    for image_paths, mask_path in progress(zip(images, masks), "decode every file", "pair", total=len(masks)):
        for image_path in image_paths:
            read_image(image_path, keep_single_channel)
        reader(mask_path)


def check_sizes(images: Sequence[Sequence[Path]], masks: Sequence[Path]) -> None:
    """Image and mask of each pair have the same size (headers only: no decoding)."""
    for image_paths, mask_path in progress(zip(images, masks), "check sizes", "pair", total=len(masks)):
        mask_size = header_size(mask_path, "mask")
        for image_path in image_paths:
            size = header_size(image_path, "image")
            if size != mask_size:
                raise ValueError(
                    f"image {image_path} is {size[0]}x{size[1]} but its mask {mask_path} is "
                    f"{mask_size[0]}x{mask_size[1]}; masks must match their images pixel for pixel "
                    f"(re-export the mask at the image's size)"
                )


def check_mask_values(
    masks: Sequence[Path],
    num_classes: int,
    ignore_index: int,
    value_map: Mapping[int, int] | None = None,
    limit: int | None = 500,
    reader: Callable[..., np.ndarray] = read_mask,
) -> None:
    """Mask values are classes or the ignore value; binary 0/255 masks are not read as 'all ignore'.

    Reads an evenly spaced sample of ``limit`` masks, so a large dataset is checked in seconds.
    """
    bad: dict[int, list[str]] = {}
    binary_only, saw_255 = True, False
    seen: set[int] = set()
    checked = evenly_spaced(len(masks), limit)
    for index in progress(checked, "check mask values", "mask"):
        values = set(np.unique(reader(masks[index], value_map)).tolist())
        seen |= values
        for value in values - set(range(num_classes)) - {ignore_index}:
            bad.setdefault(value, []).append(str(masks[index]))
        binary_only &= values <= {0, 255}
        saw_255 |= 255 in values
    if bad:
        examples = "; ".join(f"{value} in {files[0]} ({len(files)} masks)" for value, files in sorted(bad.items())[:5])
        raise ValueError(
            f"masks hold values {sorted(bad)} that are neither a class (0..{num_classes - 1}) nor the ignore value "
            f"{ignore_index}: {examples}. Set dataset.num_classes to the number of classes, map stored values to "
            f"classes with dataset.mask_value_map, or fix the masks"
        )
    if binary_only and saw_255 and ignore_index == 255 and not value_map:
        raise ValueError(
            f"every checked mask holds only 0 and 255 (e.g. {masks[0]}): binary masks saved as 0/255. With 255 as "
            f"the ignore value the foreground would vanish from training. Read 255 as class 1 with "
            f"dataset.mask_value_map='{{255:1}}' and dataset.num_classes=2"
        )
    labels = seen - {ignore_index}
    if labels and max(labels) < num_classes - 1:
        warnings.warn(
            f"num_classes={num_classes} but the {len(checked)} masks checked (e.g. {masks[0].parent}) hold classes up "
            f"to {max(labels)} only: classes {max(labels) + 1}..{num_classes - 1} never appear, so they would be "
            f"trained as absent and score no IoU. If the count is wrong, set dataset.num_classes={max(labels) + 1}; "
            f"if those classes are merely rare, this is expected", UserWarning, stacklevel=2)
