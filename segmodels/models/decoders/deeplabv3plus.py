"""DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation").

ASPP (``deeplabv3.ASPP``) on the coarsest level, upsampled to the stride-4 level, which is projected to
48 channels (``skip_channels``) and concatenated; two 3x3 convs of ``decoder_channels`` (256) and the 1x1
classifier; the model upsamples the stride-4 logits to the input (the paper's 4x). Atrous rates follow the
backbone's output stride: (6, 12, 18) at 16, (12, 24, 36) at 8.

The 3x3 convs of ASPP and of the decoder are depthwise-separable, each half with BatchNorm and ReLU, as the
paper (Sec. 3.3, "applying the depthwise separable convolution to both ASPP and decoder modules") and
mmsegmentation's ``DepthwiseSeparableASPPHead`` build them; ``separable=false`` gives plain 3x3 convs, the layout
of checkpoints written before separable became the default (they are recognised and load as they were: see
``segmodels.io.checkpoint_reader.legacy_options``).

Deliberate differences: the ASPP projection after the concatenation is a 1x1 conv (the paper's and torchvision's;
mmsegmentation's is 3x3); the image-pooling branch has no BatchNorm (``PooledBranch``). A backbone without a
stride-4 level gives its nearest (``levels.nearest_level``: stride 8 when its finest level is 8).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvNormAct, conv_norm_act
from .deeplabv3 import ASPP, atrous_rates
from .levels import nearest_level, resize_to
from .registry import ANY_PYRAMID, DECODERS


@DECODERS.register("deeplabv3plus", ANY_PYRAMID)
class DeepLabV3PlusDecoder(nn.Module):
    legacy_layout = ("separable", False, "decoder.fuse.0.0.weight", True)  # plain 3x3 convs before 2026-12
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        decoder_channels: int = 256,
        skip_channels: int = 48,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        separable: bool = True,
    ) -> None:
        super().__init__()
        self.skip = nearest_level(strides, 4)
        self.levels = sorted({self.skip, len(channels) - 1})  # the level indices this decoder reads
        self.rates = atrous_rates(rates, strides[-1])
        self.aspp = ASPP(channels[-1], decoder_channels, self.rates, dropout, separable)
        self.project = ConvNormAct(channels[self.skip], skip_channels, 1)
        self.fuse = nn.Sequential(
            conv_norm_act(decoder_channels + skip_channels, decoder_channels, 3, separable=separable),
            conv_norm_act(decoder_channels, decoder_channels, 3, separable=separable),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        skip = self.project(levels[self.skip])
        context = resize_to(self.aspp(levels[-1]), skip)
        return self.classifier(self.fuse(torch.cat([context, skip], dim=1)))
