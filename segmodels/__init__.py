"""segmodels: semantic segmentation by transfer learning, any backbone with any decoder."""
from . import resolvers  # noqa: F401  (the configs' resolvers, wherever segmodels is imported)
from .backbones import BACKBONES, Backbone, BackboneInfo, PretrainedWeightsUnavailable
from .build import build_model, list_backbones, list_decoders
from .callbacks import FreezeBackbone
from .decoders import DECODERS
from .model import SegmentationModel
from .module import SegmentationModule

__all__ = [
    "BACKBONES",
    "DECODERS",
    "Backbone",
    "BackboneInfo",
    "FreezeBackbone",
    "PretrainedWeightsUnavailable",
    "SegmentationModel",
    "SegmentationModule",
    "build_model",
    "list_backbones",
    "list_decoders",
]
