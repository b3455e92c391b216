"""Backbones: each module registers its names in BACKBONES on import, with a BackboneInfo."""
from __future__ import annotations

from . import efficientnet_lite, mit, mobilenet, resnet, timm_any, vgg  # noqa: F401  (registration)
from .base import Backbone, BackboneInfo
from .registry import BACKBONES
from .weights import PretrainedWeightsUnavailable

__all__ = ["BACKBONES", "Backbone", "BackboneInfo", "PretrainedWeightsUnavailable", "normalization_of"]


def normalization_of(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) of backbone ``name``, or None if no backbone has that name: the data side's
    ``datamodules.normalizations`` entry point, so datamodules never import segmodels."""
    try:
        info = BACKBONES.info(name)
    except KeyError:
        return None
    return (info.mean, info.std) if info is not None else None
