"""segmodels: semantic segmentation by transfer learning, any backbone with any decoder.

The public API is ``__all__`` below (tests import every name in it; only ``fit``, train.py's pipeline, composes
Hydra configs). The layout runs one way,
models -> {evaluation, io} -> training -> cli, and names from the earlier flat layout still import, with a
warning (``segmodels.deprecation``).
"""
from . import deprecation

deprecation.install()

from .cli import resolvers  # noqa: E402, F401  (the configs' resolvers, wherever segmodels is imported)
from .evaluation import SegmentationScores  # noqa: E402
from .models import (  # noqa: E402
    BACKBONES,
    DECODERS,
    Backbone,
    BackboneInfo,
    PretrainedWeightsUnavailable,
    SegmentationModel,
    build_model,
    list_backbones,
    list_decoders,
)
from .training import SegmentationModule  # noqa: E402
from .training.callbacks import FreezeBackbone  # noqa: E402

__all__ = [
    "BACKBONES",
    "DECODERS",
    "Backbone",
    "BackboneInfo",
    "FreezeBackbone",
    "PretrainedWeightsUnavailable",
    "SegmentationModel",
    "SegmentationModule",
    "SegmentationScores",
    "build_model",
    "fit",
    "list_backbones",
    "list_decoders",
]


def __getattr__(name: str):
    """``segmodels.fit`` (train.py's pipeline) on first use: it composes Hydra configs, which nothing else here needs."""
    if name == "fit":
        from .cli.notebook import fit

        return fit
    raise AttributeError(f"module 'segmodels' has no attribute {name!r}")
