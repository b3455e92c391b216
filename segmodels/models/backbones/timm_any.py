"""Any timm model that supports ``features_only``: ``backbone=timm backbone.name=convnext_tiny``.

Names the registry does not know are looked up in timm (``timm/<name>`` forces timm for a name the
registry also has, e.g. ``timm/resnet50``). timm's own pretrained config gives mean/std, and timm
adapts the first convolution to ``in_channels``.
"""
from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers import LayerNorm2d
from torch import nn

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, BackboneInfo, check_output_stride
from .registry import BACKBONES
from .vit import ViTBackbone, is_plain_vit, vit_info
from .weights import PretrainedWeightsUnavailable


class TimmBackbone(Backbone):
    """``out_norm``: a LayerNorm (channels, epsilon 1e-6) on each level, as mmsegmentation's ConvNeXt and Swin and
    transformers' ``*Backbone`` classes normalise their outputs (an imported UperNet needs it); ``model_kwargs``:
    more arguments for ``timm.create_model`` (e.g. ``depths`` and ``dims`` of a ConvNeXt)."""

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
        self.norms = nn.ModuleList(LayerNorm2d(c, eps=1e-6) for c in self.channels) if out_norm else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.net(x)
        if str(getattr(self.net, "output_fmt", "NCHW")).endswith("NHWC"):  # timm's Swin, MaxViT ...: channels last
            levels = [level.permute(0, 3, 1, 2) for level in levels]
        return [norm(level) for norm, level in zip(self.norms, levels)] if self.norms is not None else levels


def resolve_timm(name: str):
    """The factory for a timm model name (with or without ``timm/``), or None if timm has no such model;
    plain ViTs (one resolution throughout) become pyramids through ``vit.ViTBackbone``."""
    model_name = name.removeprefix("timm/")
    if not timm.is_model(model_name):
        return None
    return partial(ViTBackbone, model_name) if is_plain_vit(model_name) else partial(TimmBackbone, model_name)


def timm_info(name: str) -> BackboneInfo:
    """From timm's pretrained config and its feature pyramid built on the meta device (no memory, no weights)."""
    model_name = name.removeprefix("timm/")
    if is_plain_vit(model_name):
        return vit_info(model_name)
    with torch.device("meta"):
        net = timm.create_model(model_name, features_only=True, pretrained=False)
    config = net.pretrained_cfg
    return BackboneInfo(
        tuple(net.feature_info.channels()), tuple(net.feature_info.reduction()),
        tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD)),
        f"timm {config.get('hf_hub_id') or config.get('url') or model_name}",
    )


# the generic entry: build_model("timm", ..., backbone_kwargs={"model_name": ...}); its info depends on the name
BACKBONES.register("timm")(TimmBackbone)
BACKBONES.register("vit")(ViTBackbone)  # build_model("vit", ..., backbone_kwargs={"model_name": ...}), or the name itself
BACKBONES.fallback = resolve_timm
BACKBONES.fallback_info = timm_info
BACKBONES.fallback_names = timm.list_models
