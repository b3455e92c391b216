"""Backbone + decoder = a segmentation model, with the freezing that transfer learning needs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .backbones.stages import early_stages


class SegmentationModel(nn.Module):
    """Logits at the input's size, whatever the backbone's strides."""

    def __init__(self, backbone: Backbone, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.backbone_frozen = False
        self.frozen_bn_eval = True
        self.frozen_stages = 0
        self.fixed: list[nn.Parameter] = []  # never trained, whatever the freezing (LoRA's base weights)
        self._stage_cache: dict[int, tuple[list[nn.Parameter], list[nn.Module]]] = {}

    @property
    def mean(self) -> tuple[float, ...]:
        return self.backbone.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.backbone.std

    @property
    def log_scores(self) -> bool:
        """Whether the output is the log of class scores (mask classification) rather than logits: overlapping
        windows then average the scores, as Mask2Former's and EoMT's evaluation does."""
        return bool(getattr(self.decoder, "log_scores", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.backbone(self.pad(x)), *x.shape[-2:])

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """A ViT sees whole patches: pad right and bottom (``decode`` crops the logits back)."""
        multiple = self.backbone.pad_multiple
        height, width = x.shape[-2:]
        return F.pad(x, (0, -width % multiple, 0, -height % multiple)) if multiple > 1 else x

    def as_list(self, levels: list[torch.Tensor | None] | dict) -> list[torch.Tensor | None]:
        """The backbone's levels as a list (a feature cache holds those the decoder reads as a dict)."""
        if isinstance(levels, dict):
            return [levels.get(i, levels.get(str(i))) for i in range(len(self.backbone.channels))]
        return levels

    def decode(self, levels: list[torch.Tensor | None] | dict, height: int, width: int) -> torch.Tensor:
        """Logits at ``height`` x ``width`` from the backbone's levels (a list, or a dict of the levels the decoder
        reads, as a feature cache holds them)."""
        levels = self.as_list(levels)
        multiple = self.backbone.pad_multiple
        padded = (height + -height % multiple, width + -width % multiple)
        # a decoder that combines at the input's size itself (mask classification: ``takes_size``) is given it
        logits = self.decoder(levels, size=padded) if getattr(self.decoder, "takes_size", False) else self.decoder(levels)
        if logits.shape[-2:] != padded or torch.onnx.is_in_onnx_export():  # exported for every size
            logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., :height, :width] if multiple > 1 else logits

    def training_loss(self, levels: list[torch.Tensor | None] | dict, target: torch.Tensor, criterion: nn.Module,
                      ignore_index: int) -> torch.Tensor:
        """The training objective. The decoder contract: a decoder may own its loss by defining
        ``loss(levels, target, ignore_index)`` (mask classification's set loss needs its query predictions, which
        logits do not carry); it gets the target padded with ``ignore_index`` to the padded input, so its maps and the
        target cover the same extent. Every other decoder trains with ``criterion`` on its logits."""
        own = getattr(self.decoder, "loss", None)
        if own is None:
            return criterion(self.decode(levels, *target.shape[-2:]), target)
        multiple = self.backbone.pad_multiple
        height, width = target.shape[-2:]
        padded = F.pad(target, (0, -width % multiple, 0, -height % multiple), value=ignore_index) \
            if multiple > 1 else target
        return own(self.as_list(levels), padded, ignore_index)

    @property
    def scheduled(self) -> bool:
        """Whether the decoder has a training schedule of its own (``progress``)."""
        return hasattr(self.decoder, "progress")

    def set_progress(self, fraction: float) -> None:
        """Tell a decoder with a training schedule of its own (EoMT's mask annealing, ``progress(fraction)``, the
        other optional part of the contract) how far training is, 0 to 1."""
        progress = getattr(self.decoder, "progress", None)
        if progress is not None:
            progress(fraction)

    def fresh_modules(self) -> list[nn.Module]:
        """The backbone's newly initialised parts (a ViT's pyramid adapter), which train with the decoder."""
        return [getattr(self.backbone, name) for name in self.backbone.fresh]

    def freeze_backbone(self, bn_eval: bool = True) -> None:
        """No gradients into the backbone; with ``bn_eval`` its BatchNorm statistics stay fixed too."""
        self.backbone.requires_grad_(False)
        for module in self.fresh_modules():
            module.requires_grad_(True)
        self.backbone_frozen, self.frozen_bn_eval = True, bn_eval
        self.train(self.training)

    def unfreeze_backbone(self) -> None:
        """Gradients into the backbone again, except its first ``frozen_stages`` stages."""
        self.backbone.requires_grad_(True)
        self.backbone_frozen = False
        for parameter in [*self.early_stages(self.frozen_stages)[0], *self.fixed]:
            parameter.requires_grad_(False)
        self.train(self.training)

    def early_stages(self, stages: int) -> tuple[list[nn.Parameter], list[nn.Module]]:
        """What the first ``stages`` stages of the backbone hold (see ``stages.early_stages``), found once."""
        if stages not in self._stage_cache:
            self._stage_cache[stages] = early_stages(self.backbone, stages)
        return self._stage_cache[stages]

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if mode and self.frozen_bn_eval:
            if self.backbone_frozen:
                self.backbone.eval()
                for module in self.fresh_modules():
                    module.train()
            for norm in self.early_stages(self.frozen_stages)[1]:
                norm.eval()
        if mode and self.fixed:  # LoRA: the pretrained BatchNorm statistics stay fixed with the weights, bn_eval or not
            fixed = {id(p) for p in self.fixed}
            for norm in self.backbone.modules():
                if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.weight is not None \
                        and id(norm.weight) in fixed:
                    norm.eval()
        return self
