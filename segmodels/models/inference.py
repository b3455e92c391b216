"""Inference beyond one forward pass: several scales, flip test-time augmentation and sliding windows.

Several scales and flip are mmsegmentation's "ms+flip" protocol: the image is resized by each factor, the logits
of each (and of its mirror image) are resized back to the original size, and their softmaxes are averaged; windows
average logits, as mmsegmentation's ``slide_inference``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def check_scales(scales: Sequence[float]) -> list[float]:
    """``scales`` as floats if they are positive numbers, else a refusal naming them and an example."""
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        values = []
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"scales={list(scales) if isinstance(scales, (list, tuple)) else scales}: give one or more "
                         f"positive numbers, e.g. scales=[1.0] or scales=[0.5,0.75,1.0,1.25,1.5,1.75]")
    return values


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets covering ``length`` with windows of ``tile``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


BLENDS = ("uniform", "gaussian", "cosine")


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """An (height, width) pair from one number (square) or two; refused by name otherwise."""
    values = [value, value] if isinstance(value, (int, float)) else list(value)
    if len(values) != 2 or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{name}={value}: give a positive whole number or [height, width], e.g. {name}=512 or "
                         f"{name}=[512,1024]")
    return int(values[0]), int(values[1])


def blend_weights(height: int, width: int, blend: str, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) weights of one window's pixels in the overlap average: ``uniform`` (mmsegmentation's: every pixel
    alike), ``gaussian`` (nnU-Net's and MONAI's: sigma 1/8 of the window, centre 1) or ``cosine`` (a Hann window), both
    of which fade a window's edges, where its context is poorest, and so remove tile seams. Never 0, so a pixel only
    one window covers keeps that window's value."""
    if blend not in BLENDS:
        raise ValueError(f"blend={blend!r}: choose one of {', '.join(BLENDS)}")
    if blend == "uniform":
        return torch.ones(1, 1, height, width, device=device)

    def profile(length: int) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=torch.float32) + 0.5
        if blend == "gaussian":
            centre, sigma = length / 2, length / 8
            return torch.exp(-((position - centre) ** 2) / (2 * sigma ** 2))
        return torch.sin(torch.pi * position / length) ** 2

    weights = profile(height)[:, None] * profile(width)[None, :]
    return (weights / weights.max()).clamp(min=1e-3)[None, None]


def fitted_size(height: int, width: int, fit: Sequence[int | None]) -> tuple[int, int]:
    """The size mmsegmentation's ``Resize(scale=(long, short), keep_ratio=True)`` gives an image: the largest that
    fits a ``long`` x ``short`` box in either orientation (mmcv's ``rescale_size``: the factor is
    min(long / longer side, short / shorter side), up or down, and sides are rounded half up). detectron2's
    ``ResizeShortestEdge(short, max_size=long)`` (Mask2Former's test resize) gives the same factor. ``long`` None:
    no bound on the longer side, the shorter side becomes ``short`` (EoMT's test resize)."""
    if not isinstance(fit, (list, tuple)) or len(fit) != 2:
        raise ValueError(f"fit={fit}: give [long, short], e.g. fit=[2048,512], or [null,512] for the shorter side only")
    long, short = (None if fit[0] is None else pair(fit[0], "fit")[0]), pair(fit[1], "fit")[0]
    factor = min(short / min(height, width), (max(long, short) / max(height, width)) if long else float("inf"))
    return int(height * factor + 0.5), int(width * factor + 0.5)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, images: torch.Tensor, flip: bool = False, tile: int | Sequence[int] | None = None,
    overlap: float = 0.25, scales: Sequence[float] = (1.0,), stride: int | Sequence[int] | None = None,
    window_batch: int = 4, blend: str = "uniform", fit: Sequence[int] | None = None, grid: str = "mmseg",
) -> torch.Tensor:
    """(N, C, H, W) class probabilities at the images' size. ``fit`` ([long, short]) first resizes each image to
    fit that box, keeping its ratio (``fitted_size``); ``scales`` multiply that size and ``flip`` adds the mirror
    image; ``tile`` slides a window (``tile`` or [height, width]) over an image larger than it, every ``stride``
    pixels (or [h, w]; default: the window less ``overlap``), ``window_batch`` windows per forward pass; ``grid``
    places the windows (``window_grid``).

    As mmsegmentation's ``slide_inference`` and test-time augmentation: windows average logits (weighted by
    ``blend``), each augmented copy's logits are resized to the image's size before the softmax, and the copies'
    probabilities are averaged."""
    height, width = images.shape[-2:]
    base = fitted_size(height, width, fit) if fit else (height, width)
    total, copies = None, 0
    for scale in check_scales(scales):
        size = base if scale == 1 else (max(1, round(base[0] * scale)), max(1, round(base[1] * scale)))
        resized = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                        align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            logits = sliding_logits(model, resized.flip(-1) if mirrored else resized, tile, overlap, stride,
                                    window_batch, blend, grid)
            logits = logits.flip(-1) if mirrored else logits
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
            copies += 1
    return total / copies if copies > 1 else total


def window_stride(tile: tuple[int, int], stride, overlap: float) -> tuple[int, int]:
    """``stride`` as (h, w), or the window less ``overlap``; refused when windows would leave pixels uncovered."""
    steps = pair(stride, "stride") if stride else tuple(max(1, int(t * (1 - overlap))) for t in tile)
    if steps[0] > tile[0] or steps[1] > tile[1]:
        raise ValueError(f"stride={list(steps)} is larger than the window tile={list(tile)}: pixels between windows "
                         f"would get no prediction; give a stride of at most the window")
    return steps


GRIDS = ("mmseg", "even")


def evenly_spread(length: int, tile: int) -> list[int]:
    """EoMT's window offsets: as few windows as cover ``length``, their overlap shared out evenly (its
    ``window_imgs_semantic``: ceil(length / tile) windows, the j-th at int(j * (tile - overlap / (count - 1))))."""
    if length <= tile:
        return [0]
    count = -(-length // tile)
    overlap = count * tile - length
    step = tile - (overlap / (count - 1) if overlap > 0 else 0)
    return [int(j * step) for j in range(count)]


def window_grid(height: int, width: int, tile: tuple[int, int], stride: tuple[int, int],
                grid: str = "mmseg") -> list[tuple[int, int]]:
    """(top, left) of every window, row by row. ``mmseg``: mmsegmentation's slide_inference grid (every ``stride``
    pixels, the last window of a row or column flush with the image's edge; a side shorter than the window is one
    window of that side). ``even``: EoMT's, the fewest windows that cover each side, spread evenly (no stride)."""
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r}: choose one of {', '.join(GRIDS)}")
    if grid == "even":
        return [(top, left) for top in evenly_spread(height, tile[0]) for left in evenly_spread(width, tile[1])]
    return [(top, left) for top in window_starts(height, tile[0], stride[0])
            for left in window_starts(width, tile[1], stride[1])]


def log_of_scores(scores: torch.Tensor) -> torch.Tensor:
    """The log of averaged class scores (a mask classifier's, ``log_scores``), floored only where they underflow: a
    higher floor (1e-8) made every class tie where all masks are nearly off, and the first class won."""
    return scores.clamp(min=torch.finfo(scores.dtype).tiny).log()


def sliding_logits(model: nn.Module, images: torch.Tensor, tile, overlap: float, stride, window_batch: int,
                   blend: str, grid: str = "mmseg") -> torch.Tensor:
    """Float logits of ``images``: one forward pass, or windows averaged as mmsegmentation's ``slide_inference``
    (weighted by ``blend``). A model whose output is the log of class scores (``log_scores``: Mask2Former, EoMT)
    has the scores averaged, as EoMT's evaluation does, and their log returned."""
    height, width = images.shape[-2:]
    if not tile:
        return model(images).float()
    tile = pair(tile, "tile")
    if height <= tile[0] and width <= tile[1]:
        return model(images).float()
    stride = window_stride(tile, stride, overlap)
    if window_batch < 1:
        raise ValueError(f"window_batch={window_batch}: give 1 or more windows per forward pass")
    windows = window_grid(height, width, tile, stride, grid)
    window = (min(tile[0], height), min(tile[1], width))  # every window of this image has this size
    scores = bool(getattr(model, "log_scores", False))
    weights = blend_weights(*window, blend, images.device)
    total, counts = None, torch.zeros(1, 1, height, width, device=images.device)
    batch = images.shape[0]
    for first in range(0, len(windows), window_batch):
        chunk = windows[first:first + window_batch]
        crops = torch.cat([images[..., top:top + window[0], left:left + window[1]] for top, left in chunk])
        logits = model(crops).float()
        logits = logits.exp() if scores else logits
        if total is None:
            total = torch.zeros(batch, logits.shape[1], height, width, device=images.device)
        for index, (top, left) in enumerate(chunk):
            part = logits[index * batch:(index + 1) * batch]
            total[..., top:top + window[0], left:left + window[1]] += part * weights
            counts[..., top:top + window[0], left:left + window[1]] += weights
    return log_of_scores(total / counts) if scores else total / counts
