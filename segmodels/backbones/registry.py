from ..registry import Registry

BACKBONES: Registry = Registry("backbone")
