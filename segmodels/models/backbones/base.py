"""The backbone contract: a feature pyramid, described before any forward pass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models import adapt_input_conv
from torch import nn
from torch.utils.checkpoint import checkpoint

from .stages import stage_parameters


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is, declared where it is registered (as timm's pretrained configs and torchvision's
    weight enums are), so the data side and decoders can be set up without building the network.

    ``channels`` and ``strides`` are those of the default options (one entry per level, fine to coarse);
    ``mean``/``std`` what the published ``weights`` expect of RGB inputs.
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str


class Backbone(nn.Module):
    """Returns a list of levels (feature maps) from fine to coarse.

    Subclasses set ``channels`` and ``strides`` (one entry per level, stride = reduction from the
    input) and ``mean``/``std`` (the input normalisation its pretrained weights expect), so a decoder
    can be built, and the data side normalised, without running the network.
    """

    channels: list[int]
    strides: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fresh: tuple[str, ...] = ()  # submodules initialised anew (a ViT's pyramid adapter): they train with the decoder
    pad_multiple: int = 1  # inputs are padded to a multiple of this (a ViT's patch size), logits cropped back
    grad_checkpointing: bool = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's (or block's) activations in the backward pass instead of keeping them: less
        memory for more compute. timm networks inside (ViTs, ``features_only`` models) use their own switch."""
        self.grad_checkpointing = enable
        for module in self.children():
            if hasattr(module, "set_grad_checkpointing"):
                module.set_grad_checkpointing(enable)

    def run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)``, checkpointed when ``grad_checkpointing`` is on and gradients are being recorded.

        BatchNorm layers inside see the batch twice (forward and recomputation), so their running statistics
        take two momentum steps per batch, as with timm's ``checkpoint_seq``.
        """
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def layers(self) -> list[list[nn.Parameter]]:
        """The backbone's parameters grouped from the input to the output, for layer-wise learning-rate decay:
        by stage (see ``stages.stage_parameters``); a ViT groups by block."""
        return stage_parameters(self)

    def keep_levels(self, used: list[int]) -> None:
        """Told which levels the decoder reads, so new weights that only feed others can go (a ViT's adapter
        branches); a pretrained network keeps everything."""


OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(backbone: str, output_stride: int, allowed: tuple[int, ...] = OUTPUT_STRIDES) -> int:
    """``output_stride`` if ``backbone`` can run at it (later stages dilated instead of strided), else a clear
    refusal naming what it allows."""
    if output_stride not in allowed:
        others = ", ".join(map(str, allowed))
        raise ValueError(
            f"backbone '{backbone}' cannot run at backbone.output_stride={output_stride}: it allows {others}. "
            f"Dilated backbones: resnet50, resnet101, efficientnet_lite0 and timm models (8, 16, 32; e.g. "
            f"backbone=timm backbone.name=resnet18), mobilenet_v3_large (16, 32)"
        )
    return output_stride


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Keep pretrained filters useful for any channel count (1: RGB summed; more: RGB cycled, rescaled)."""
    return adapt_input_conv(in_channels, weight)
