"""PSPNet (Zhao et al. 2017, "Pyramid Scene Parsing Network").

Pyramid pooling on the coarsest level: average pooling to 1x1, 2x2, 3x3 and 6x6 bins, each reduced by a
1x1 conv to a quarter of the input's channels, upsampled and concatenated with the input; a 3x3 conv of
``decoder_channels`` (512) + BatchNorm + ReLU, dropout 0.1 and the 1x1 classifier; the model upsamples
the logits to the input. The paper runs it on a dilated ResNet at output stride 8
(``backbone.output_stride=8``).

Deliberate differences: the paper's auxiliary loss on layer3 is left out (no decoder here adds one);
the 1x1 pooling branch has no BatchNorm (``blocks.PooledBranch``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvNormAct, PyramidPooling
from .registry import ANY_PYRAMID, DECODERS


@DECODERS.register("pspnet", ANY_PYRAMID)
class PSPNetDecoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: int = 512,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.levels = [len(channels) - 1]  # the level indices this decoder reads
        self.pooling = PyramidPooling(channels[-1], max(1, channels[-1] // len(bins)), bins)
        self.bottleneck = ConvNormAct(self.pooling.out_channels, decoder_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.bottleneck(self.pooling(levels[-1]))))
