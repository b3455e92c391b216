"""DPT (Ranftl et al. ICCV 2021, "Vision Transformers for Dense Prediction"): the dense head DINOv2 and DINOv3 use for
depth, here for segmentation as the paper's ADE20K model.

Reassemble: the tokens of four ViT blocks, as maps at the patch stride, are each projected by a 1x1 conv to
``reassemble_channels`` and resampled by 4, 2, 1 and 1/2 (transposed convs, identity, a 3x3 conv of stride 2), which
turns one resolution into a pyramid at strides 4-32 for patch 16. The ``readout`` token: ``ignore`` drops it (the
maps as the backbone gives them), ``project`` concatenates it to every patch token and maps back with a linear layer
and GELU (the paper's best; the backbone must give the concatenation, ``backbone.readout=true``). Fusion: a 3x3 conv
(no bias) to ``features`` per level, then from the coarsest level down, RefineNet-style blocks: the finer level
through a pre-activation residual unit added to the running map, a second unit, x2 bilinear upsampling (corners
aligned, as the reference) and a 1x1 conv. Head: 3x3 conv, BatchNorm, ReLU, dropout, 1x1 classifier and x2
upsampling: logits at the input's resolution for patch 16.

On a backbone that is already a pyramid (a CNN, or a ViT with its adapter), the levels are not resampled: DPT's fusion
and head on them, the paper's "DPT-Hybrid" idea. As transformers' ``DPTForSemanticSegmentation`` (which a published
DPT imports into exactly); ``fusion_norm`` is its ``use_batch_norm_in_fusion_residual``. Deliberate difference: none.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .levels import pyramid_levels
from .registry import ANY_PYRAMID, DECODERS

READOUTS = ("ignore", "project")
FACTORS = (4, 2, 1, 0.5)  # the paper's resampling of the four ViT levels


def resample(channels: int, factor: float) -> nn.Module:
    if factor > 1:
        return nn.ConvTranspose2d(channels, channels, int(factor), stride=int(factor))
    if factor == 1:
        return nn.Identity()
    return nn.Conv2d(channels, channels, 3, stride=int(1 / factor), padding=1)


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: ReLU, 3x3 conv (BatchNorm), ReLU, 3x3 conv (BatchNorm), plus the input."""

    def __init__(self, channels: int, norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.norm1 = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm1(self.conv1(F.relu(x)))
        return x + self.norm2(self.conv2(F.relu(out)))


class FusionBlock(nn.Module):
    """``first``: the coarsest level's block, which has no finer level to add (and so no unit for it; the
    reference builds one that never runs)."""

    def __init__(self, channels: int, norm: bool, first: bool = False) -> None:
        super().__init__()
        self.skip = None if first else ResidualUnit(channels, norm)
        self.refine = ResidualUnit(channels, norm)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if skip.shape[-2:] != x.shape[-2:]:  # an odd size: the finer level meets the upsampled map's size
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.skip(skip)
        x = F.interpolate(self.refine(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.project(x)


@DECODERS.register("dpt", ANY_PYRAMID)
class DPTDecoder(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        features: int = 256,
        reassemble_channels: Sequence[int] = (96, 192, 384, 768),
        readout: str = "ignore",
        fusion_norm: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"decoder.readout={readout!r}: choose one of {', '.join(READOUTS)}")
        self.levels = pyramid_levels(strides)[-4:]
        used = [channels[i] for i in self.levels]
        plain = len(set(strides[i] for i in self.levels)) == 1 and len(self.levels) == 4  # one resolution: a ViT's
        factors = FACTORS if plain else (1,) * len(self.levels)
        widths = list(reassemble_channels)[-len(self.levels):]
        if readout == "project":  # each level holds [patch token, readout token]: a linear map back to one token
            if any(c % 2 for c in used):
                raise ValueError(f"decoder.readout=project needs the backbone's patch and readout tokens concatenated "
                                 f"(backbone.readout=true), got {used} channels")
            self.readout = nn.ModuleList(nn.Sequential(nn.Linear(c, c // 2), nn.GELU()) for c in used)
            used = [c // 2 for c in used]
        else:
            self.readout = None
        self.reassemble = nn.ModuleList(nn.Sequential(nn.Conv2d(c, w, 1), resample(w, f))
                                        for c, w, f in zip(used, widths, factors))
        self.convs = nn.ModuleList(nn.Conv2d(w, features, 3, padding=1, bias=False) for w in widths)
        self.fusion = nn.ModuleList(FusionBlock(features, fusion_norm, first=i == 0) for i in range(len(self.levels)))
        self.head = nn.Sequential(nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Conv2d(features, num_classes, 1))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        maps = [levels[i] for i in self.levels]
        if self.readout is not None:
            maps = [project(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for project, m in zip(self.readout, maps)]
        maps = [conv(reassemble(m)) for conv, reassemble, m in zip(self.convs, self.reassemble, maps)]
        fused = None
        for block, level in zip(self.fusion, reversed(maps)):  # coarsest first
            fused = block(level) if fused is None else block(fused, level)
        logits = self.head(fused)
        return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
