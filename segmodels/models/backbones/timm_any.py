"""Any timm model that supports ``features_only``: ``backbone=timm backbone.name=convnext_tiny``.

Names the registry does not know are looked up in timm (``timm/<name>`` forces timm for a name the
registry also has, e.g. ``timm/resnet50``). timm's own pretrained config gives mean/std, and timm
adapts the first convolution to ``in_channels``.
"""
from __future__ import annotations

import inspect
from functools import partial

import timm
import torch

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, BackboneInfo
from .registry import BACKBONES
from .swin import SwinBackbone, is_swin
from .timm_features import TimmBackbone
from .vit import ViTBackbone, is_plain_vit, vit_info

__all__ = ["TimmBackbone", "SwinBackbone", "resolve_timm", "timm_backbone", "timm_info"]


def timm_backbone(model_name: str = "convnext_tiny", **options) -> Backbone:
    """``backbone=timm backbone.model_name=...``: a Swin gets the reference's windows at any input size
    (``swin.SwinBackbone``), any other model timm's ``features_only`` pyramid."""
    return (SwinBackbone if is_swin(model_name) else TimmBackbone)(model_name, **options)


timm_backbone.__signature__ = inspect.signature(TimmBackbone)  # its options, for the config groups (config_options)


def resolve_timm(name: str):
    """The factory for a timm model name (with or without ``timm/``), or None if timm has no such model;
    plain ViTs (one resolution throughout) become pyramids through ``vit.ViTBackbone``."""
    model_name = name.removeprefix("timm/")
    if not timm.is_model(model_name):
        return None
    if is_plain_vit(model_name):
        return partial(ViTBackbone, model_name)
    return partial(SwinBackbone if is_swin(model_name) else TimmBackbone, model_name)


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
BACKBONES.register("timm")(timm_backbone)
BACKBONES.register("vit")(ViTBackbone)  # build_model("vit", ..., backbone_kwargs={"model_name": ...}), or the name itself
BACKBONES.register("swin")(SwinBackbone)  # likewise for timm's Swin names
BACKBONES.fallback = resolve_timm
BACKBONES.fallback_info = timm_info
BACKBONES.fallback_names = timm.list_models
