"""Inference beyond one forward pass: flip test-time augmentation and sliding windows for large images."""
from __future__ import annotations

import torch
from torch import nn


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets covering ``length`` with windows of ``tile``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, images: torch.Tensor, flip: bool = False, tile: int | None = None, overlap: float = 0.25
) -> torch.Tensor:
    """(N, C, H, W) class probabilities; ``flip`` averages with the mirrored image, ``tile`` slides a
    ``tile`` x ``tile`` window (overlapping by ``overlap``) over images larger than it, averaging overlaps."""

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
