"""U-Net decoder of seed 000: bilinear x2 up, concatenate the skip, two 3x3 conv + ReLU per stage."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import DECODERS


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear with aligned corners (the seed's UpsamplingBilinear2d), to the skip's actual size."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=True)


@DECODERS.register("unet")
class UNetDecoder(nn.Module):
    """One up stage per level below the coarsest, filters ``decoder_channels`` from fine to coarse.

    When the finest level is coarser than the input (ResNet, EfficientNet: stride 2) an extra
    up stage restores full resolution, as the seed's ResNet50 U-Net does.
    """

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        levels = len(channels)
        self.levels = list(range(levels))  # the level indices this decoder reads
        if len(decoder_channels) < levels - 1:
            raise ValueError(f"unet needs {levels - 1} decoder_channels for {levels} levels, got {list(decoder_channels)}")
        widths = list(decoder_channels[: levels - 1])
        below = [*widths[1:], channels[-1]]  # what arrives from the stage above each one
        self.stages = nn.ModuleList(double_conv(channels[i] + below[i], widths[i]) for i in range(levels - 1))
        self.full_resolution = double_conv(widths[0], widths[0]) if strides[0] > 1 else None
        self.finest_stride = strides[0]
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = levels[-1]
        for index in range(len(self.stages) - 1, -1, -1):
            skip = levels[index]
            x = self.stages[index](torch.cat([skip, upsample_to(x, skip)], dim=1))
        if self.full_resolution is not None:
            x = F.interpolate(x, scale_factor=self.finest_stride, mode="bilinear", align_corners=True)
            x = self.full_resolution(x)
        return self.classifier(x)
