"""VGG from torchvision, tapped before each max-pool as in seed 000 (``features[:4] [4:9] ...``)."""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models

from .base import IMAGENET_MEAN, IMAGENET_STD, adapt_first_conv_weight
from .registry import BACKBONES
from .tapped import TappedSequential
from .weights import load_exactly, published_state


class VGGBackbone(TappedSequential):
    """Five levels at strides 1..16; the last max-pool is dropped, as the seed's ``[23:-1]`` does."""

    def __init__(self, arch: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None) -> None:
        build, published = ARCHS[arch]
        net = build(weights=None)
        if in_channels != 3:
            net.features[0] = nn.Conv2d(in_channels, net.features[0].out_channels, 3, padding=1)
        state = published_state(arch, published, pretrained, weights)
        if state is not None:
            state["features.0.weight"] = adapt_first_conv_weight(state["features.0.weight"], in_channels)
            load_exactly(net, state, source=weights or published.url)
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        super().__init__(net.features, ends=pools)
        convs = [(i, m.out_channels) for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        self.channels = [[c for i, c in convs if i < end][-1] for end in self.ends]
        self.strides = [2**i for i in range(len(self.ends))]
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD


ARCHS = {
    "vgg16": (models.vgg16, models.VGG16_Weights.IMAGENET1K_V1),
    "vgg16_bn": (models.vgg16_bn, models.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19": (models.vgg19, models.VGG19_Weights.IMAGENET1K_V1),
    "vgg19_bn": (models.vgg19_bn, models.VGG19_BN_Weights.IMAGENET1K_V1),
}

for _arch in ARCHS:
    BACKBONES.register(_arch)(partial(VGGBackbone, _arch))
