"""UPerNet (Xiao et al. 2018, "Unified Perceptual Parsing for Scene Understanding"), as mmsegmentation's
``UPerHead`` pairs it with Swin, ConvNeXt and ViT backbones.

PSPNet's pyramid pooling (bins 1, 2, 3, 6) on the coarsest level, a 3x3 conv to ``decoder_channels``
(512), used as the top of a feature pyramid over the levels at strides 4..32 (lateral 1x1 convs, top-down
sums, a 3x3 conv each, all conv-BN-ReLU); every pyramid map upsampled to stride 4, concatenated, fused by
a 3x3 conv and classified; the model upsamples the logits to the input.

Levels as in ``fpn`` (``levels.pyramid_levels``: the deepest four at stride 4 or coarser, repeated strides
kept). Deliberate difference: the 1x1 pooling branch has no BatchNorm (``blocks.PooledBranch``; ``pool_norm=true``
puts it back, as mmsegmentation and transformers build it: an imported UperNet needs it).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvNormAct, PyramidPooling
from .levels import pyramid_levels, resize_to
from .registry import ANY_PYRAMID, DECODERS


@DECODERS.register("upernet", ANY_PYRAMID)
class UPerNetDecoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: int = 512,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        pool_norm: bool = False,
    ) -> None:
        super().__init__()
        self.levels = pyramid_levels(strides)
        used = [channels[i] for i in self.levels]
        self.pooling = PyramidPooling(used[-1], decoder_channels, bins, pool_norm)
        self.bottleneck = ConvNormAct(self.pooling.out_channels, decoder_channels, 3)
        self.lateral = nn.ModuleList(ConvNormAct(c, decoder_channels, 1) for c in used[:-1])
        self.output = nn.ModuleList(ConvNormAct(decoder_channels, decoder_channels, 3) for _ in used[:-1])
        self.fuse = ConvNormAct(len(used) * decoder_channels, decoder_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        maps = [levels[i] for i in self.levels]
        laterals = [conv(m) for conv, m in zip(self.lateral, maps[:-1])] + [self.bottleneck(self.pooling(maps[-1]))]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize_to(laterals[i], laterals[i - 1])
        outputs = [conv(x) for conv, x in zip(self.output, laterals[:-1])] + [laterals[-1]]
        fused = self.fuse(torch.cat([resize_to(x, outputs[0]) for x in outputs], dim=1))
        return self.classifier(self.dropout(fused))
