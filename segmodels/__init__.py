"""segmodels: semantic segmentation by transfer learning, any backbone with any decoder."""
from . import resolvers  # noqa: F401  (the configs' resolvers, wherever segmodels is imported)
from .backbones import BACKBONES, Backbone, PretrainedWeightsUnavailable
from .callbacks import FreezeBackbone
from .decoders import DECODERS
from .model import SegmentationModel, build_model, list_backbones, list_decoders
from .module import SegmentationModule

__all__ = [
    "BACKBONES",
    "DECODERS",
    "Backbone",
    "FreezeBackbone",
    "PretrainedWeightsUnavailable",
    "SegmentationModel",
    "SegmentationModule",
    "build_model",
    "list_backbones",
    "list_decoders",
]
