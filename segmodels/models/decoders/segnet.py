"""The SegNet-style encoder-decoder of seed 001, with every layer its own.

Each stage doubles the resolution with a 2x2 transposed convolution, then 3x3 conv + BN + ReLU
layers; the deepest stage keeps its width, the others halve it and concatenate the encoder's map of
the same stride first. Seed 001 builds repeated layers as ``[conv, bn, relu] * n``, which puts one
module object in the network n times, so those layers share weights; here each is created anew.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import conv_bn_relu
from .levels import resize_to
from .registry import DECODERS


def decoder_block(in_channels: int, out_channels: int, convs: int, upsample: bool = True) -> nn.Sequential:
    """Seed 001's ``_DecoderBlock``: up x2, conv to half width, ``convs - 2`` more, conv to ``out``."""
    middle = in_channels // 2
    up = nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2) if upsample else nn.Identity()
    layers: list[nn.Module] = [up, *conv_bn_relu(in_channels, middle)]
    for _ in range(convs - 2):
        layers += conv_bn_relu(middle, middle)
    return nn.Sequential(*layers, *conv_bn_relu(middle, out_channels))


@DECODERS.register("segnet")
class SegNetDecoder(nn.Module):
    """Built on the last (up to) five levels; seed 001 has 4 convs in the two deepest fused stages, 2 after.

    The finest stage doubles the resolution only when the finest level is coarser than the input
    (seed 001's after-pool taps: stride 2), never past it. ``relu_logits`` keeps the seed's BN + ReLU
    after the class layer (true by default, for fidelity).
    """

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        deep_convs: int = 4,
        shallow_convs: int = 2,
        relu_logits: bool = True,
    ) -> None:
        super().__init__()
        c = list(channels[-5:])
        self.levels = list(range(len(channels)))[-5:]  # the level indices this decoder reads
        n = len(c)
        self.top = nn.Sequential(
            nn.ConvTranspose2d(c[-1], c[-1], 2, stride=2), *[m for _ in range(deep_convs) for m in conv_bn_relu(c[-1], c[-1])]
        )
        outs = [num_classes, *c[: n - 2]]  # each stage ends at the width of the next finer skip
        arriving = [*outs[1:], c[-1]]  # width coming up from the stage above each one
        self.stages = nn.ModuleList(
            decoder_block(c[i] + arriving[i], outs[i], deep_convs if i >= n - 3 else shallow_convs,
                          upsample=i > 0 or strides[-n] > 1)
            for i in range(n - 1)
        )
        if not relu_logits:
            self.stages[0] = nn.Sequential(*list(self.stages[0])[:-2])  # drop the BN + ReLU on the logits

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        levels = levels[-5:]
        x = resize_to(self.top(levels[-1]), levels[-2])
        for i in range(len(self.stages) - 1, -1, -1):
            x = self.stages[i](torch.cat([levels[i], x], dim=1))
            if i > 0:
                x = resize_to(x, levels[i - 1])
        return x
