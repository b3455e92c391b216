"""Decoders: each module registers its name in DECODERS on import."""
from . import att_unet, deeplabv3, deeplabv3plus, fcn, fpn, linear, pspnet, segformer, segnet, unet, upernet  # noqa: F401
from .registry import DECODERS

__all__ = ["DECODERS"]
