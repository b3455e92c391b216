"""ResNet from torchvision, tapped as in seed 000: relu after conv1 (stride 2), then layer1..layer4;
``output_stride`` 16 or 8 dilates layer4 (and layer3) with torchvision's ``replace_stride_with_dilation``."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision import models

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, BackboneInfo, adapt_first_conv_weight, check_output_stride
from .registry import BACKBONES
from .weights import load_exactly, published_state


class ResNetBackbone(Backbone):
    """Five levels at strides 2..32, keeping torchvision's key layout (``conv1``, ``layer1`` ...)."""

    def __init__(self, arch: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
                 output_stride: int = 32) -> None:
        super().__init__()
        build, published = ARCHS[arch]
        # torchvision's BasicBlock (resnet18/34) cannot dilate; timm's ResNets can (backbone=timm)
        check_output_stride(arch, output_stride, (8, 16, 32) if arch in ("resnet50", "resnet101") else (32,))
        # torchvision's dilation: layer4 (16), layer3 and layer4 (8) keep their resolution
        net = build(weights=None, replace_stride_with_dilation=[False, output_stride <= 8, output_stride <= 16])
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        state = published_state(arch, published, pretrained, weights)
        if state is not None:
            state["conv1.weight"] = adapt_first_conv_weight(state["conv1.weight"], in_channels)
            load_exactly(net, state, source=weights or published.url)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        info = BACKBONES.info(arch)
        self.channels, self.strides = list(info.channels), [min(s, output_stride) for s in info.strides]
        self.mean, self.std = info.mean, info.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c2 = self.run(self.layer1, self.maxpool(stem))
        c3 = self.run(self.layer2, c2)
        c4 = self.run(self.layer3, c3)
        return [stem, c2, c3, c4, self.run(self.layer4, c4)]


ARCHS = {
    # V1 weights: the ones seed 000 (and most published U-Net/ResNet results) start from.
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
}
BASIC, BOTTLENECK = (64, 64, 128, 256, 512), (64, 256, 512, 1024, 2048)

for _arch, (_build, _weights) in ARCHS.items():
    _info = BackboneInfo(BASIC if _arch in ("resnet18", "resnet34") else BOTTLENECK, (2, 4, 8, 16, 32),
                         IMAGENET_MEAN, IMAGENET_STD, f"torchvision {_weights}")
    BACKBONES.register(_arch, _info)(partial(ResNetBackbone, _arch))
