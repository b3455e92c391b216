"""Decoders: each module registers its name in DECODERS on import."""
from . import att_unet, fcn, segnet, unet  # noqa: F401  (registration)
from .registry import DECODERS

__all__ = ["DECODERS"]
