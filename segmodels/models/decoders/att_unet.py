"""Attention U-Net decoder of seed 000: attention gates on the skips, a connection conv on the deepest level."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv_bn_relu
from .registry import DECODERS


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn_relu(in_channels, out_channels), *conv_bn_relu(out_channels, out_channels))


class UpConv(nn.Module):
    """Nearest-neighbour up-sampling to a given size, then conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class AttentionGate(nn.Module):
    """Weights a skip connection by a map computed from it and the decoder's gating signal."""

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(gate_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.skip = nn.Sequential(nn.Conv2d(skip_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(F.relu(self.gate(gate) + self.skip(skip)))


@DECODERS.register("att_unet")
class AttentionUNetDecoder(nn.Module):
    """``decoder_channels`` from fine to coarse; the deepest level is lifted to ``decoder_channels[levels - 1]`` first.

    As in the UNet decoder, an extra up stage restores full resolution when the finest level has
    stride > 1.
    """

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: Sequence[int] = (64, 128, 256, 512, 1024),
    ) -> None:
        super().__init__()
        levels, widths = len(channels), list(decoder_channels)
        self.levels = list(range(levels))  # the level indices this decoder reads
        if len(widths) < levels:
            raise ValueError(f"att_unet needs {levels} decoder_channels for {levels} levels, got {widths}")
        self.connection = nn.Conv2d(channels[-1], widths[levels - 1], 3, padding=1)
        self.ups = nn.ModuleList(UpConv(widths[i + 1], widths[i]) for i in range(levels - 1))
        self.gates = nn.ModuleList(AttentionGate(widths[i], channels[i], widths[i] // 2) for i in range(levels - 1))
        self.fuse = nn.ModuleList(conv_block(channels[i] + widths[i], widths[i]) for i in range(levels - 1))
        full = [UpConv(widths[0], widths[0]), conv_block(widths[0], widths[0])]
        self.full_resolution = nn.ModuleList(full) if strides[0] > 1 else None
        self.finest_stride = strides[0]
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = self.connection(levels[-1])
        for index in range(len(self.ups) - 1, -1, -1):
            skip = levels[index]
            up = self.ups[index](x, skip.shape[-2:])
            x = self.fuse[index](torch.cat([self.gates[index](up, skip), up], dim=1))
        if self.full_resolution is not None:
            upsample, fuse = self.full_resolution
            x = fuse(upsample(x, [s * self.finest_stride for s in x.shape[-2:]]))
        return self.classifier(x)
