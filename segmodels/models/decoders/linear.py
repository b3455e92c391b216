"""The linear probe of DINOv2 (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without
Supervision", its "+ms"-free "lin." protocol): the levels resized to one size and concatenated, then
BatchNorm and a single 1x1 convolution (a linear layer per pixel).

Levels as in ``fpn`` (``levels.pyramid_levels``: the deepest four at stride 4 or coarser), resized to the
finest of them. Deliberate difference: DINOv2 concatenates the patch tokens of its last blocks at the
patch grid; a plain ViT here reaches the head through its pyramid adapter (new weights that train), so
with a frozen ViT this head measures the adapter + linear layer, not the raw tokens.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .levels import pyramid_levels, resize_to
from .registry import ANY_PYRAMID, DECODERS


@DECODERS.register("linear", ANY_PYRAMID)
class LinearDecoder(nn.Module):
    def __init__(self, channels: Sequence[int], strides: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.levels = pyramid_levels(strides)
        width = sum(channels[i] for i in self.levels)
        self.norm = nn.BatchNorm2d(width)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        maps = [levels[i] for i in self.levels]
        return self.classifier(self.norm(torch.cat([resize_to(m, maps[0]) for m in maps], dim=1)))
