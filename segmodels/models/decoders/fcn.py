"""FCN-32s / 16s / 8s (Long et al.), in the two forms of the seeds.

The original (seed 002; ``fc_channels=4096, fc_kernel=7, dropout=0.5``): fc6 a 7x7 conv and fc7 a
1x1 conv of 4096 channels with dropout, which ``init_from_backbone`` convolutionalises from a VGG
classifier's pretrained weights ("net surgery"); score layers zero-initialised; transposed
convolutions of kernel 2s, stride s, initialised as bilinear upsampling and left without bias. The
defaults keep all of that but size fc6/fc7 (3x3 / 1x1, 512) for any backbone: the original's fc6 on
a 2048-channel ResNet level alone would hold 411M parameters.

Seed 003's form: ``fc_kernel=1, dropout=0, score_relu=true, bilinear=false``: 1x1 conv6/conv7, a
ReLU after each score layer, and transposed convolutions with kernel = stride and a bias.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from torch import nn

from .levels import level_for_stride, resize_to, take
from .registry import DECODERS


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """A (channels, channels, k, k) transposed-conv weight that upsamples each channel bilinearly."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = torch.arange(kernel_size, dtype=torch.float32)
    profile = 1 - (grid - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = profile[:, None] * profile[None, :]
    return weight


class Upsample(nn.ConvTranspose2d):
    """Learned x``factor`` upsampling: bilinear-initialised (kernel 2f) or plain (kernel f, with bias)."""

    def __init__(self, channels: int, factor: int, bilinear: bool) -> None:
        if bilinear:
            super().__init__(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
            with torch.no_grad():
                self.weight.copy_(bilinear_kernel(channels, 2 * factor))
        else:
            super().__init__(channels, channels, factor, stride=factor)


class FCNDecoder(nn.Module):
    """``skips`` finer levels (0: 32s, 1: 16s at stride 16, 2: 8s at strides 16 and 8) added to the scores."""

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        skips: int = 2,
        fc_channels: int = 512,
        fc_kernel: int = 3,
        dropout: float = 0.1,
        score_relu: bool = False,
        bilinear: bool = True,
    ) -> None:
        super().__init__()
        self.sources = [level_for_stride(strides, s) for s in (32, 16, 8)[: skips + 1]]
        top = channels[self.sources[0][0]]
        self.levels = sorted({index for index, _ in self.sources})  # the level indices this decoder reads
        self.fc6 = nn.Conv2d(top, fc_channels, fc_kernel, padding=fc_kernel // 2)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.scores = nn.ModuleList(
            [nn.Conv2d(fc_channels, num_classes, 1)]
            + [nn.Conv2d(channels[index], num_classes, 1) for index, _ in self.sources[1:]]
        )
        for score in self.scores if bilinear else []:
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        self.score_activation = nn.ReLU(inplace=True) if score_relu else nn.Identity()
        # seed 003 upsamples each score straight to stride 8 (x2, x4); the original chains x2 steps
        self.chained = bilinear
        if bilinear:
            self.steps = nn.ModuleList(Upsample(num_classes, 2, True) for _ in range(skips))
        else:
            self.steps = nn.ModuleList(Upsample(num_classes, 2 ** (skips - i), False) for i in range(skips))
        self.final = Upsample(num_classes, 32 // 2**skips, bilinear)

    def init_from_backbone(self, backbone: nn.Module) -> None:
        """Net surgery: fc6/fc7 from the backbone's pretrained classifier, where it has one that fits."""
        classifier = getattr(backbone, "classifier_state", None) or {}
        for name in ("fc6", "fc7"):
            layer: nn.Conv2d = getattr(self, name)
            weight, bias = classifier.get(f"{name}.weight"), classifier.get(f"{name}.bias")
            if weight is not None and weight.numel() == layer.weight.numel() and bias.numel() == layer.bias.numel():
                with torch.no_grad():
                    layer.weight.copy_(weight.view_as(layer.weight))
                    layer.bias.copy_(bias.view_as(layer.bias))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        maps = [take(levels, index, pool) for index, pool in self.sources]
        x = self.dropout(self.relu(self.fc6(maps[0])))
        x = self.dropout(self.relu(self.fc7(x)))
        scores = [self.score_activation(score(m)) for score, m in zip(self.scores, [x, *maps[1:]])]
        if self.chained:
            fused = scores[0]
            for step, skip in zip(self.steps, scores[1:]):
                fused = resize_to(step(fused), skip) + skip
        else:
            fused = scores[-1]
            for step, coarse in zip(self.steps, scores[:-1]):
                fused = fused + resize_to(step(coarse), scores[-1])
        return self.final(fused)


for _name, _skips in (("fcn32s", 0), ("fcn16s", 1), ("fcn8s", 2)):
    DECODERS.register(_name)(partial(FCNDecoder, skips=_skips))
