"""Backbones whose levels are consecutive slices of one ``features`` Sequential (VGG, MobileNet)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Backbone


class TappedSequential(Backbone):
    """Level ``i`` is the output of ``features[ends[i - 1]:ends[i]]``.

    ``features`` keeps torchvision's ``features.N`` names, so published state dicts load unchanged.
    """

    def __init__(self, features: nn.Sequential, ends: list[int]) -> None:
        super().__init__()
        self.features = features[: ends[-1]]
        self.ends = list(ends)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels, start = [], 0
        for end in self.ends:
            x = self.run(self.features[start:end], x)  # a slice shares the modules
            levels.append(x)
            start = end
        return levels
