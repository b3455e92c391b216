"""The semantic head of Panoptic FPN (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks").

A feature pyramid (Lin et al. 2017) over the levels at strides 4..32: a lateral 1x1 conv per level to
``pyramid_channels`` (256), a top-down pathway adding each coarser map upsampled to the finer one, and a
3x3 conv on each sum. Each pyramid map then goes through ``log2(stride / 4)`` stages of 3x3 conv
(``decoder_channels``, 128) + GroupNorm + ReLU + 2x bilinear upsampling (one stage without upsampling
at stride 4), the maps are summed at stride 4, and a 1x1 conv gives the logits, which the model
upsamples to the input (the paper's 4x).

Levels: the deepest four at stride 4 or coarser (``levels.pyramid_levels``): a dilated backbone's
repeated strides (4, 8, 16, 16) are used as they are, each map resized to its finer neighbour's actual
size; a backbone with fewer levels (VGG: 4, 8, 16) gives a shorter pyramid. The number of upsampling
stages per map is counted from the strides the backbone declares.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .levels import pyramid_levels, resize_to
from .registry import ANY_PYRAMID, DECODERS


def conv_gn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(min(32, out_channels), out_channels), nn.ReLU(inplace=True)]


class ScaleHead(nn.Module):
    """From one pyramid map to the finest stride: conv-GN-ReLU stages, each but a stride-4 one followed by
    a 2x upsampling; the last step resizes to the finest map's actual size."""

    def __init__(self, in_channels: int, out_channels: int, upsamplings: int) -> None:
        super().__init__()
        stages = max(1, upsamplings)
        self.convs = nn.ModuleList(
            nn.Sequential(*conv_gn_relu(in_channels if i == 0 else out_channels, out_channels)) for i in range(stages)
        )
        self.upsamplings = upsamplings

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index < self.upsamplings - 1:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return resize_to(x, reference)


class FeaturePyramid(nn.Module):
    """Lateral 1x1 convs, the top-down sum and a 3x3 conv per map (Lin et al. 2017)."""

    def __init__(self, channels: Sequence[int], pyramid_channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, pyramid_channels, 1) for c in channels)
        self.output = nn.ModuleList(nn.Conv2d(pyramid_channels, pyramid_channels, 3, padding=1) for _ in channels)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(m) for conv, m in zip(self.lateral, maps)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize_to(laterals[i], laterals[i - 1])
        return [conv(x) for conv, x in zip(self.output, laterals)]


@DECODERS.register("fpn", ANY_PYRAMID)
class FPNDecoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        pyramid_channels: int = 256,
        decoder_channels: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.levels = pyramid_levels(strides)
        finest = strides[self.levels[0]]
        self.pyramid = FeaturePyramid([channels[i] for i in self.levels], pyramid_channels)
        self.scales = nn.ModuleList(
            ScaleHead(pyramid_channels, decoder_channels, round(math.log2(strides[i] / finest))) for i in self.levels
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        pyramid = self.pyramid([levels[i] for i in self.levels])
        fused = sum(scale(x, pyramid[0]) for scale, x in zip(self.scales, pyramid))
        return self.classifier(self.dropout(fused))
