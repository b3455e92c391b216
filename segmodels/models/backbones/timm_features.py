"""Any timm model with ``features_only`` as a feature pyramid (levels in NCHW, optional output norms)."""
from __future__ import annotations

import timm
import torch
from timm.layers import LayerNorm2d
from torch import nn

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, check_output_stride
from .weights import PretrainedWeightsUnavailable


class TimmBackbone(Backbone):
    """``out_norm``: a LayerNorm over the channels (epsilon ``norm_eps``) on each level, as mmsegmentation's ConvNeXt
    and Swin and transformers' ``*Backbone`` classes normalise their outputs (an imported UperNet needs it); ``model_kwargs``:
    more arguments for ``timm.create_model`` (e.g. ``depths`` and ``dims`` of a ConvNeXt)."""

    norm_eps = 1e-6  # the output norms' epsilon: mmsegmentation's and transformers' ConvNeXt

    def __init__(self, model_name: str = "convnext_tiny", pretrained: bool = True, in_channels: int = 3,
                 weights: str | None = None, out_indices: list[int] | None = None, output_stride: int = 32,
                 out_norm: bool = False, model_kwargs: dict | None = None) -> None:
        super().__init__()
        check_output_stride(model_name, output_stride)
        options = {"features_only": True, "in_chans": in_channels, **(model_kwargs or {})}
        if output_stride != 32:  # timm dilates the later stages of the models that support it
            options["output_stride"] = output_stride
        if out_indices is not None:
            options["out_indices"] = tuple(out_indices)
        if weights:
            options.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        else:
            options["pretrained"] = pretrained
        try:
            self.net = timm.create_model(model_name, **options)
        except (OSError, RuntimeError) as error:
            if weights or not pretrained or isinstance(error, RuntimeError) and "state_dict" in str(error):
                raise
            raise PretrainedWeightsUnavailable(
                f"timm backbone '{model_name}' asked for pretrained weights, which are not in the Hugging Face "
                f"cache (HF_HOME) and could not be downloaded ({error}). Either download them on a machine with "
                f"internet and copy the cache, give a local file with backbone.weights=/path/to/state_dict, or "
                f"train from random weights with backbone.pretrained=false."
            ) from error
        self.channels = self.net.feature_info.channels()
        self.strides = self.net.feature_info.reduction()
        config = self.net.pretrained_cfg
        self.mean, self.std = tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD))
        self.norms = nn.ModuleList(LayerNorm2d(c, eps=self.norm_eps) for c in self.channels) if out_norm else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.net(x)
        if str(getattr(self.net, "output_fmt", "NCHW")).endswith("NHWC"):  # timm's Swin, MaxViT ...: channels last
            levels = [level.permute(0, 3, 1, 2) for level in levels]
        return [norm(level) for norm, level in zip(self.norms, levels)] if self.norms is not None else levels
