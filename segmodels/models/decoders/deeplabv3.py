"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation").

ASPP on the coarsest level: a 1x1 conv, three atrous 3x3 convs and image pooling, each to ``channels``
(256) with BatchNorm, concatenated and projected back to ``channels``; then a 3x3 conv and the 1x1
classifier (torchvision's ``DeepLabHead``). Logits come out at the coarsest level's stride and the model
resizes them to the input.

Deliberate differences: the atrous rates follow the backbone's output stride (``rates`` is the paper's
(6, 12, 18) at output stride 16, scaled by 16 / stride: (12, 24, 36) at 8, (3, 6, 9) at an undilated 32)
rather than a fixed list; the image-pooling branch has no BatchNorm (see ``PooledBranch``), so a batch of
one image trains. The paper's multi-grid and its output stride (8 or 16) come from the backbone
(``backbone.output_stride``), not from this head.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvNormAct, PooledBranch, conv_norm_act
from .registry import ANY_PYRAMID, DECODERS


def atrous_rates(rates: Sequence[int], stride: int) -> list[int]:
    """The paper's rates (given for output stride 16) at ``stride``, at least 1."""
    return [max(1, round(r * 16 / stride)) for r in rates]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 1x1, atrous 3x3 (depthwise-separable when ``separable``, as
    DeepLabV3+'s) and image-level branches, fused by a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float = 0.1,
                 separable: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvNormAct(in_channels, channels, 1)]
            + [conv_norm_act(in_channels, channels, 3, dilation=r, separable=separable) for r in rates]
            + [PooledBranch(in_channels, channels, bins=1)]
        )
        self.project = nn.Sequential(ConvNormAct(len(self.branches) * channels, channels, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


@DECODERS.register("deeplabv3", ANY_PYRAMID)
class DeepLabV3Decoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.levels = [len(channels) - 1]  # the level indices this decoder reads
        self.rates = atrous_rates(rates, strides[-1])
        self.aspp = ASPP(channels[-1], decoder_channels, self.rates, dropout)
        self.head = ConvNormAct(decoder_channels, decoder_channels, 3)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.head(self.aspp(levels[-1])))
