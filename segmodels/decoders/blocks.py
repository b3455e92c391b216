"""Layer groups several decoders build from."""
from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv + BatchNorm + ReLU, as a list to splice into a Sequential."""
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
