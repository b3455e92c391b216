"""MobileNet V2 / V3-Large from torchvision, tapped at the last block of each stride (2..32)."""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models

from .base import IMAGENET_MEAN, IMAGENET_STD, adapt_first_conv_weight
from .registry import BACKBONES
from .tapped import TappedSequential
from .weights import load_exactly, published_state


class MobileNetBackbone(TappedSequential):
    def __init__(self, arch: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None) -> None:
        build, published, ends = ARCHS[arch]
        net = build(weights=None)
        stem = net.features[0][0]
        if in_channels != 3:
            net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=2, padding=1, bias=False)
        state = published_state(arch, published, pretrained, weights)
        if state is not None:
            state["features.0.0.weight"] = adapt_first_conv_weight(state["features.0.0.weight"], in_channels)
            load_exactly(net, state, source=weights or published.url)
        super().__init__(net.features, ends=ends)
        self.channels = [self.features[end - 1].out_channels for end in self.ends]
        self.strides = [2, 4, 8, 16, 32]
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD


ARCHS = {
    "mobilenet_v2": (models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, [2, 4, 7, 14, 19]),
    "mobilenet_v3_large": (models.mobilenet_v3_large, models.MobileNet_V3_Large_Weights.IMAGENET1K_V1, [2, 4, 7, 13, 17]),
}

for _arch in ARCHS:
    BACKBONES.register(_arch)(partial(MobileNetBackbone, _arch))
