"""Layer groups several decoders build from."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv + BatchNorm + ReLU, as a list to splice into a Sequential."""
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class ConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU: the unit of the modern heads (mmsegmentation's ConvModule)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 groups: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvNormAct(nn.Sequential):
    """A depthwise-separable conv: a depthwise ``kernel_size`` conv and a pointwise 1x1 conv, each with BatchNorm and
    ReLU (DeepLabV3+'s, Chen et al. 2018, Sec. 3.3; mmsegmentation's ``DepthwiseSeparableConvModule``). smp leaves out
    the BatchNorm and ReLU between the two."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__(
            ConvNormAct(in_channels, in_channels, kernel_size, dilation=dilation, groups=in_channels),
            ConvNormAct(in_channels, out_channels, 1),
        )


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                  separable: bool = False) -> nn.Sequential:
    """A ``kernel_size`` conv + BatchNorm + ReLU, depthwise-separable when asked (a 1x1 conv is always plain)."""
    if separable and kernel_size > 1:
        return SeparableConvNormAct(in_channels, out_channels, kernel_size, dilation)
    return ConvNormAct(in_channels, out_channels, kernel_size, dilation)


class PooledBranch(nn.Module):
    """Average-pool to ``bins`` x ``bins``, 1x1 conv, then back to the input's size (PSPNet's pyramid
    pooling, DeepLab's image pooling with bins=1).

    The 1x1 branch (image-level features) has a biased conv and no BatchNorm: a statistic over one value
    per image fails on a batch of one and is noise on small batches. mmsegmentation and torchvision put a
    BatchNorm there and cannot train on a batch of one image; ``norm=True`` builds it their way (a checkpoint
    trained with it, such as an imported UperNet, needs it).
    """

    def __init__(self, in_channels: int, out_channels: int, bins: int, norm: bool = False) -> None:
        super().__init__()
        self.bins = bins
        if bins == 1 and not norm:
            self.project = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))
        else:
            self.project = ConvNormAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(F.adaptive_avg_pool2d(x, self.bins))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module (Zhao et al. 2017): the input concatenated with pooled branches."""

    def __init__(self, in_channels: int, branch_channels: int, bins: Sequence[int] = (1, 2, 3, 6),
                 norm: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(PooledBranch(in_channels, branch_channels, b, norm) for b in bins)
        self.out_channels = in_channels + len(bins) * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(branch(x) for branch in self.branches)], dim=1)
