"""Inference beyond one forward pass: several scales, flip test-time augmentation and sliding windows.

Several scales and flip are mmsegmentation's "ms+flip" protocol: the image is resized by each factor, the
softmax of each (and of its mirror image) is resized back to the original size, and all are averaged.
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


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, images: torch.Tensor, flip: bool = False, tile: int | None = None, overlap: float = 0.25,
    scales: Sequence[float] = (1.0,),
) -> torch.Tensor:
    """(N, C, H, W) class probabilities at the images' size; ``scales`` and ``flip`` average over resized and
    mirrored copies, ``tile`` slides a ``tile`` x ``tile`` window (overlapping by ``overlap``) over images
    larger than it, averaging overlaps."""
    height, width = images.shape[-2:]
    total = None
    for scale in check_scales(scales):
        resized = images if scale == 1 else F.interpolate(
            images, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="bilinear",
            align_corners=False)
        probabilities = _one_scale(model, resized, flip, tile, overlap)
        if scale != 1:
            probabilities = F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)
        total = probabilities if total is None else total + probabilities
    return total / len(scales) if len(scales) > 1 else total


def _one_scale(model: nn.Module, images: torch.Tensor, flip: bool, tile: int | None, overlap: float) -> torch.Tensor:

    def forward(x: torch.Tensor) -> torch.Tensor:
        probabilities = model(x).float().softmax(dim=1)
        if flip:
            probabilities = (probabilities + model(x.flip(-1)).float().softmax(dim=1).flip(-1)) / 2
        return probabilities

    height, width = images.shape[-2:]
    if not tile or (height <= tile and width <= tile):
        return forward(images)
    stride = max(1, int(tile * (1 - overlap)))
    total, counts = None, torch.zeros(1, 1, height, width, device=images.device)
    for top in window_starts(height, tile, stride):
        for left in window_starts(width, tile, stride):
            window = images[..., top : top + tile, left : left + tile]
            probabilities = forward(window)
            if total is None:
                total = torch.zeros(images.shape[0], probabilities.shape[1], height, width, device=images.device)
            total[..., top : top + tile, left : left + tile] += probabilities
            counts[..., top : top + tile, left : left + tile] += 1
    return total / counts
