"""Backbones: each module registers its names in BACKBONES on import."""
from . import efficientnet_lite, mobilenet, resnet, timm_any, vgg  # noqa: F401  (registration)
from .base import Backbone
from .registry import BACKBONES
from .weights import PretrainedWeightsUnavailable

__all__ = ["BACKBONES", "Backbone", "PretrainedWeightsUnavailable"]
