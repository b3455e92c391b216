"""Picking the pyramid levels a decoder needs by stride, whatever the backbone offers."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def level_for_stride(strides: Sequence[int], wanted: int) -> tuple[int, int]:
    """(level index, max-pool factor) giving a map at stride ``wanted``.

    A backbone tapped before its last pooling (VGG, as seed 000 taps it) has no stride-32 level; that
    level is then the next finer one max-pooled, which is exactly what the dropped pool would give.
    """
    if wanted in strides:
        return list(strides).index(wanted), 1
    finer = [(i, s) for i, s in enumerate(strides) if s < wanted and wanted % s == 0]
    if not finer:
        raise ValueError(f"no level at stride {wanted} or finer dividing it among strides {list(strides)}")
    index, stride = max(finer, key=lambda item: (item[1], item[0]))  # the deepest of repeated strides
    return index, wanted // stride


def take(levels: list[torch.Tensor], index: int, pool: int) -> torch.Tensor:
    x = levels[index]
    return F.max_pool2d(x, pool, ceil_mode=True) if pool > 1 else x


def resize_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Align to ``reference``'s size when a fixed x2 / x4 step overshoots an odd size.

    During ONNX export the resize is always recorded, so the graph stays right for every input size.
    """
    if x.shape[-2:] == reference.shape[-2:] and not torch.onnx.is_in_onnx_export():
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def nearest_level(strides: Sequence[int], wanted: int) -> int:
    """The level whose stride is nearest ``wanted`` (by ratio; the coarser on a tie), the deepest of
    repeated strides: a decoder's stride-4 level is stride 8 on a backbone whose finest level is 8."""
    distance = [abs(math.log2(s / wanted)) for s in strides]
    best = min(distance)
    return max(i for i, d in enumerate(distance) if d == best)


def pyramid_levels(strides: Sequence[int], finest: int = 4, count: int = 4) -> list[int]:
    """The deepest ``count`` levels at stride ``finest`` or coarser: strides 4..32 on a ResNet, the
    dilated ResNet's [4, 8, 16, 16] (layer1..layer4), VGG's [4, 8, 16]; a backbone whose finest level is
    coarser than ``finest`` gives what it has."""
    coarse_enough = [i for i, s in enumerate(strides) if s >= finest] or [len(strides) - 1]
    return coarse_enough[-count:]
