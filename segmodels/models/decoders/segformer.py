"""The all-MLP head of SegFormer (Xie et al. 2021, "SegFormer: Simple and Efficient Design for Semantic
Segmentation with Transformers").

Each level at strides 4..32 is projected by a linear layer (a 1x1 conv) to one width ``decoder_channels``
(256, the paper's B0/B1 setting; 768 for B2-B5), upsampled to the stride-4 level's size, concatenated
(coarsest first, as the paper), fused by a 1x1 conv + BatchNorm + ReLU, dropped out (0.1) and classified
by a 1x1 conv; the model upsamples the logits to the input.

Levels as in ``fpn`` (``levels.pyramid_levels``): the paper's Mix Transformer gives exactly strides
4/8/16/32; a CNN gives its deepest four levels at stride 4 or coarser, repeated strides kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvNormAct
from .levels import pyramid_levels, resize_to
from .registry import ANY_PYRAMID, DECODERS


@DECODERS.register("segformer", ANY_PYRAMID)
class SegFormerDecoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.levels = pyramid_levels(strides)
        self.project = nn.ModuleList(nn.Conv2d(channels[i], decoder_channels, 1) for i in self.levels)
        self.fuse = ConvNormAct(len(self.levels) * decoder_channels, decoder_channels, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        maps = [project(levels[i]) for project, i in zip(self.project, self.levels)]
        reference = maps[0]
        fused = self.fuse(torch.cat([resize_to(m, reference) for m in reversed(maps)], dim=1))
        return self.classifier(self.dropout(fused))
