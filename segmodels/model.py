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
        self.frozen_stages = 0
        self._stage_cache: dict[int, tuple[list[nn.Parameter], list[nn.Module]]] = {}

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
        """Gradients into the backbone again, except its first ``frozen_stages`` stages."""
        self.backbone.requires_grad_(True)
        self.backbone_frozen = False
        for parameter in self.early_stages(self.frozen_stages)[0]:
            parameter.requires_grad_(False)
        self.train(self.training)

    def early_stages(self, stages: int) -> tuple[list[nn.Parameter], list[nn.Module]]:
        """The parameters that the first ``stages`` feature levels depend on, and the BatchNorm layers
        holding only such parameters.

        Found by autograd rather than by a per-backbone list, so it holds for any backbone: a parameter
        belongs to the early stages when the level-``stages - 1`` features have a gradient with respect
        to it. The probe runs in eval mode, so no BatchNorm statistic moves.
        """
        if stages <= 0:
            return [], []
        if stages not in self._stage_cache:
            if stages >= len(self.backbone.channels):
                raise ValueError(f"frozen_stages={stages}: the backbone has {len(self.backbone.channels)} levels; "
                                 f"freeze fewer, or freeze it all with freeze.unfreeze_at_epoch=-1")
            was_training, parameters = self.backbone.training, list(self.backbone.parameters())
            first = next(m for m in self.backbone.modules() if isinstance(m, nn.Conv2d))
            probe = torch.zeros(1, first.in_channels, 64, 64, device=first.weight.device)
            self.backbone.eval()
            with torch.enable_grad():
                level = self.backbone(probe)[stages - 1]
                used = [p.requires_grad for p in parameters]
                for p in parameters:
                    p.requires_grad_(True)
                grads = torch.autograd.grad(level.sum(), parameters, allow_unused=True)
                for p, flag in zip(parameters, used):
                    p.requires_grad_(flag)
            self.backbone.train(was_training)
            early = [p for p, g in zip(parameters, grads) if g is not None]
            ids = {id(p) for p in early}
            norms = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     and any(True for _ in m.parameters(recurse=False))
                     and all(id(p) in ids for p in m.parameters(recurse=False))]
            self._stage_cache[stages] = (early, norms)
        return self._stage_cache[stages]

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if mode and self.frozen_bn_eval:
            if self.backbone_frozen:
                self.backbone.eval()
            for norm in self.early_stages(self.frozen_stages)[1]:
                norm.eval()
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
