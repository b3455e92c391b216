"""The backbone contract: a feature pyramid, described before any forward pass."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Returns a list of feature maps from fine to coarse.

    Subclasses set ``channels`` and ``strides`` (one entry per level, stride = reduction from the
    input) and ``mean``/``std`` (the input normalisation its pretrained weights expect), so a decoder
    can be built, and the data side normalised, without running the network.
    """

    channels: list[int]
    strides: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def normalisation_for(in_channels: int, mean: Sequence[float], std: Sequence[float]) -> tuple[tuple, tuple]:
    """Mean/std for ``in_channels`` inputs, cycling the RGB values the way the first conv is adapted."""
    return (
        tuple(mean[i % len(mean)] for i in range(in_channels)),
        tuple(std[i % len(std)] for i in range(in_channels)),
    )


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Keep pretrained filters useful for any channel count (1: RGB summed; more: RGB cycled, rescaled)."""
    from timm.models import adapt_input_conv

    return adapt_input_conv(in_channels, weight)
