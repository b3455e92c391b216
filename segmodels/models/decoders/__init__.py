"""Decoders: each module registers its name in DECODERS on import."""
from . import (  # noqa: F401
    att_unet,
    deeplabv3,
    deeplabv3plus,
    dpt,
    eomt,
    fcn,
    fpn,
    linear,
    mask2former,
    pspnet,
    segformer,
    segnet,
    unet,
    upernet,
)
from .registry import DECODERS

__all__ = ["DECODERS"]
