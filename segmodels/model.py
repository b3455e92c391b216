"""Backbone + decoder = a segmentation model; ``build_model`` is the one factory for all pairs."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, Backbone
from .backbones.base import normalisation_for
from .decoders import DECODERS


class SegmentationModel(nn.Module):
    """Logits at the input's size, whatever the backbone's strides."""

    def __init__(self, backbone: Backbone, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.backbone_frozen = False
        self.frozen_bn_eval = True

    @property
    def mean(self) -> tuple[float, ...]:
        return self.backbone.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.backbone.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.backbone(x))
        if logits.shape[-2:] != x.shape[-2:] or torch.onnx.is_in_onnx_export():  # exported for every size
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def freeze_backbone(self, bn_eval: bool = True) -> None:
        """No gradients into the backbone; with ``bn_eval`` its BatchNorm statistics stay fixed too."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen, self.frozen_bn_eval = True, bn_eval
        self.train(self.training)

    def unfreeze_backbone(self) -> None:
        self.backbone.requires_grad_(True)
        self.backbone_frozen = False
        self.train(self.training)

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if mode and self.backbone_frozen and self.frozen_bn_eval:
            self.backbone.eval()
        return self


def build_model(
    backbone: str,
    decoder: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = True,
    backbone_kwargs: dict[str, Any] | None = None,
    decoder_kwargs: dict[str, Any] | None = None,
) -> SegmentationModel:
    """Any registered backbone with any registered decoder."""
    encoder = BACKBONES.get(backbone)(pretrained=pretrained, in_channels=in_channels, **(backbone_kwargs or {}))
    encoder.mean, encoder.std = normalisation_for(in_channels, encoder.mean, encoder.std)
    head = DECODERS.get(decoder)(encoder.channels, encoder.strides, num_classes, **(decoder_kwargs or {}))
    if hasattr(head, "init_from_backbone"):  # e.g. FCN convolutionalising a VGG classifier
        head.init_from_backbone(encoder)
    encoder.classifier_state = {}  # only needed until here; VGG's is 120M parameters
    return SegmentationModel(encoder, head)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def list_decoders() -> list[str]:
    return DECODERS.names()
