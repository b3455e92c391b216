"""MobileNet V2 / V3-Large from torchvision, tapped at the last block of each stride (2..32)."""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import BackboneInfo, adapt_first_conv_weight, check_output_stride
from .registry import BACKBONES
from .tapped import TappedSequential
from .weights import load_exactly, published_state


class MobileNetBackbone(TappedSequential):
    def __init__(self, arch: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
                 output_stride: int = 32) -> None:
        build, published, ends = ARCHS[arch]
        check_output_stride(arch, output_stride, DILATABLE[arch])
        # torchvision dilates MobileNetV3's last stage (its DeepLabV3 backbone); MobileNetV2 has no such option
        net = build(weights=None, **({"dilated": True} if output_stride == 16 else {}))
        stem = net.features[0][0]
        if in_channels != 3:
            net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=2, padding=1, bias=False)
        state = published_state(arch, published, pretrained, weights)
        if state is not None:
            state["features.0.0.weight"] = adapt_first_conv_weight(state["features.0.0.weight"], in_channels)
            load_exactly(net, state, source=weights or published.url)
        super().__init__(net.features, ends=ends)
        info = BACKBONES.info(arch)
        self.channels, self.strides = list(info.channels), [min(s, output_stride) for s in info.strides]
        self.mean, self.std = info.mean, info.std


ARCHS = {
    "mobilenet_v2": (models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, [2, 4, 7, 14, 19]),
    "mobilenet_v3_large": (models.mobilenet_v3_large, models.MobileNet_V3_Large_Weights.IMAGENET1K_V1, [2, 4, 7, 13, 17]),
}
DILATABLE = {"mobilenet_v2": (32,), "mobilenet_v3_large": (16, 32)}
CHANNELS = {"mobilenet_v2": (16, 24, 32, 96, 1280), "mobilenet_v3_large": (16, 24, 40, 112, 960)}

for _arch, (_build, _weights, _ends) in ARCHS.items():
    _info = BackboneInfo(CHANNELS[_arch], (2, 4, 8, 16, 32), IMAGENET_MEAN, IMAGENET_STD, f"torchvision {_weights}")
    BACKBONES.register(_arch, _info)(partial(MobileNetBackbone, _arch))
