"""VGG from torchvision, tapped before each max-pool as in seed 000 (``features[:4] [4:9] ...``)."""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import BackboneInfo, adapt_first_conv_weight, check_output_stride
from .registry import BACKBONES
from .tapped import TappedSequential
from .weights import load_exactly, published_state


class VGGBackbone(TappedSequential):
    """Five levels, tapped ``before_pool`` (seed 000: strides 1..16, the last max-pool dropped, its
    ``features[:4] [4:9] [9:16] [16:23] [23:-1]`` on VGG16) or ``after_pool`` (FCN's pool1..pool5 and
    seed 001's SegNet slices ``[3:7] [7:14] [14:27] [27:40] [40:]`` on VGG19-BN: strides 2..32).

    ``own_stem`` replaces the first conv (+BN) by a freshly initialised one, as seed 001 does, so any
    ``in_channels`` starts from a stem of its own. The pretrained classifier stays available as
    ``classifier_state`` (fc6/fc7) for FCN's net surgery until the model is built.
    """

    def __init__(
        self,
        arch: str,
        pretrained: bool = True,
        in_channels: int = 3,
        weights: str | None = None,
        taps: str = "before_pool",
        own_stem: bool = False,
        output_stride: int = 32,
    ) -> None:
        check_output_stride(arch, output_stride, (32,))  # VGG has no dilated form: its pools are the strides
        if taps not in ("before_pool", "after_pool"):
            raise ValueError(f"backbone.taps={taps!r}; use before_pool or after_pool")
        build, published = ARCHS[arch]
        net = build(weights=None)
        state = published_state(arch, published, pretrained, weights)
        if in_channels != 3 and not own_stem:
            net.features[0] = nn.Conv2d(in_channels, net.features[0].out_channels, 3, padding=1)
            if state is not None:
                state["features.0.weight"] = adapt_first_conv_weight(state["features.0.weight"], in_channels)
        if state is not None:
            load_exactly(net, state, source=weights or published.url)
        if own_stem:
            width = net.features[0].out_channels
            net.features[0] = nn.Conv2d(in_channels, width, 3, padding=1)
            if isinstance(net.features[1], nn.BatchNorm2d):
                net.features[1] = nn.BatchNorm2d(width)
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        ends = pools if taps == "before_pool" else [p + 1 for p in pools]
        super().__init__(net.features, ends=ends)
        convs = [(i, m.out_channels) for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        self.channels = [[c for i, c in convs if i < end][-1] for end in self.ends]
        first = 0 if taps == "before_pool" else 1
        self.strides = [2 ** (first + i) for i in range(len(self.ends))]
        self.mean, self.std = BACKBONES.info(arch).mean, BACKBONES.info(arch).std
        self.classifier_state = {}
        if state is not None:
            self.classifier_state = {
                "fc6.weight": net.classifier[0].weight.detach(), "fc6.bias": net.classifier[0].bias.detach(),
                "fc7.weight": net.classifier[3].weight.detach(), "fc7.bias": net.classifier[3].bias.detach(),
            }


ARCHS = {
    "vgg16": (models.vgg16, models.VGG16_Weights.IMAGENET1K_V1),
    "vgg16_bn": (models.vgg16_bn, models.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19": (models.vgg19, models.VGG19_Weights.IMAGENET1K_V1),
    "vgg19_bn": (models.vgg19_bn, models.VGG19_BN_Weights.IMAGENET1K_V1),
}

for _arch, (_build, _weights) in ARCHS.items():
    # the default taps (before_pool); after_pool gives strides 2..32 with the same channels
    _info = BackboneInfo((64, 128, 256, 512, 512), (1, 2, 4, 8, 16), IMAGENET_MEAN, IMAGENET_STD, f"torchvision {_weights}")
    BACKBONES.register(_arch, _info)(partial(VGGBackbone, _arch))
