"""``build_model``: the one factory for every backbone x decoder pair, and the registries' listings."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from torch import nn

from datamodules.normalization import Normalization

from .backbones import BACKBONES, Backbone
from .decoders import DECODERS
from .decoders.registry import fitting_any_pyramid
from .lora import add_lora
from .segmentation_model import SegmentationModel


def tune_backbone(backbone: Backbone, lora_rank: int = 0, lora_alpha: float | None = None, lora_dropout: float = 0.0,
                  grad_checkpointing: bool = False) -> list[nn.Parameter]:
    """The fine-tuning options every backbone takes (``backbone.lora_rank=8``, ``backbone.grad_checkpointing=true``);
    returns the parameters that stay fixed for good (LoRA's base weights)."""
    if grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    if lora_rank < 0:
        raise ValueError(f"backbone.lora_rank={lora_rank}: give a positive rank (e.g. 8), or 0 for no LoRA")
    return add_lora(backbone, lora_rank, lora_alpha, lora_dropout) if lora_rank else []


def build_model(
    backbone: str,
    decoder: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = True,
    backbone_kwargs: dict[str, Any] | None = None,
    decoder_kwargs: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SegmentationModel:
    """Any registered backbone with any registered decoder, the decoder sized from the backbone's levels.

    ``backbone_kwargs`` holds the backbone's own options and those of ``tune_backbone`` (LoRA, checkpointing).
    ``mean``/``std`` replace the backbone's input statistics (data that is not 8-bit RGB: 16-bit, multi-band), one
    value per input channel, in the units of x / 255 as every normalisation here.
    """
    options = dict(backbone_kwargs or {})
    tuning = {name: options.pop(name) for name in TUNING_OPTIONS if name in options}
    backbone_net = BACKBONES.get(backbone)(pretrained=pretrained, in_channels=in_channels, **options)
    statistics = Normalization(backbone_net.mean, backbone_net.std).for_channels(in_channels)
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean and std or neither (got mean={mean}, std={std})")
    if mean is not None:
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean={list(mean)} and std={list(std)} need one value per input channel "
                             f"(in_channels={in_channels})")
        statistics = Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    backbone_net.mean, backbone_net.std = statistics.mean, statistics.std
    try:
        decoder_net = DECODERS.get(decoder)(backbone_net.channels, backbone_net.strides, num_classes, **(decoder_kwargs or {}))
        if hasattr(decoder_net, "attach"):  # a head that runs inside the backbone (EoMT's last ViT blocks)
            decoder_net.attach(backbone_net)
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
    model = SegmentationModel(backbone_net, decoder_net)
    model.fixed = tune_backbone(backbone_net, **tuning)
    return model


TUNING_OPTIONS = tuple(inspect.signature(tune_backbone).parameters)[1:]


def list_backbones() -> list[str]:
    return BACKBONES.names()


def list_decoders() -> list[str]:
    return DECODERS.names()
