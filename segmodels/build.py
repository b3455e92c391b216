"""``build_model``: the one factory for every backbone x decoder pair, and the registries' listings."""
from __future__ import annotations

from typing import Any

from datamodules.normalization import Normalization

from .backbones import BACKBONES
from .decoders import DECODERS
from .decoders.registry import fitting_any_pyramid
from .model import SegmentationModel


def build_model(
    backbone: str,
    decoder: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = True,
    backbone_kwargs: dict[str, Any] | None = None,
    decoder_kwargs: dict[str, Any] | None = None,
) -> SegmentationModel:
    """Any registered backbone with any registered decoder, the decoder sized from the backbone's levels."""
    backbone_net = BACKBONES.get(backbone)(pretrained=pretrained, in_channels=in_channels, **(backbone_kwargs or {}))
    statistics = Normalization(backbone_net.mean, backbone_net.std).for_channels(in_channels)
    backbone_net.mean, backbone_net.std = statistics.mean, statistics.std
    try:
        decoder_net = DECODERS.get(decoder)(backbone_net.channels, backbone_net.strides, num_classes, **(decoder_kwargs or {}))
    except ValueError as error:
        pyramid = ", ".join(f"{c}@{s}" for c, s in zip(backbone_net.channels, backbone_net.strides))
        raise ValueError(
            f"decoder '{decoder}' cannot be built on backbone '{backbone}' (levels {pyramid}): {error}. "
            f"Decoders that fit any pyramid: {', '.join(fitting_any_pyramid())}"
        ) from error
    backbone_net.keep_levels(decoder_net.levels)
    if hasattr(decoder_net, "init_from_backbone"):  # e.g. FCN convolutionalising a VGG classifier
        decoder_net.init_from_backbone(backbone_net)
    backbone_net.classifier_state = {}  # only needed until here; VGG's is 120M parameters
    return SegmentationModel(backbone_net, decoder_net)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def list_decoders() -> list[str]:
    return DECODERS.names()
