from ..registry import Registry

DECODERS: Registry = Registry("decoder")
