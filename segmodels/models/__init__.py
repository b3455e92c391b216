"""nn.Modules and how they are built: backbones, decoders, the model, LoRA and test-time inference. No Lightning,
no files."""
from .backbones import BACKBONES, Backbone, BackboneInfo, PretrainedWeightsUnavailable
from .decoders import DECODERS
from .factory import build_model, list_backbones, list_decoders
from .segmentation_model import SegmentationModel

__all__ = ["BACKBONES", "DECODERS", "Backbone", "BackboneInfo", "PretrainedWeightsUnavailable", "SegmentationModel",
           "build_model", "list_backbones", "list_decoders"]
