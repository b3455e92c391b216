from segmodels.registry import Registry

BACKBONES: Registry = Registry("backbone")
