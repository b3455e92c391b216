"""Picking the pyramid levels a decoder needs by stride, whatever the backbone offers."""
from __future__ import annotations

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
    index, stride = max(finer, key=lambda item: item[1])
    return index, wanted // stride


def take(features: list[torch.Tensor], index: int, pool: int) -> torch.Tensor:
    x = features[index]
    return F.max_pool2d(x, pool, ceil_mode=True) if pool > 1 else x


def resize_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Align to ``reference``'s size when a fixed x2 / x4 step overshoots an odd size.

    During ONNX export the resize is always recorded, so the graph stays right for every input size.
    """
    if x.shape[-2:] == reference.shape[-2:] and not torch.onnx.is_in_onnx_export():
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)
