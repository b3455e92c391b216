from segmodels.registry import Registry

DECODERS: Registry = Registry("decoder")
# registered with this info: the decoder takes whatever levels the backbone has (nearest stride), so it fits any pyramid
ANY_PYRAMID = {"fits_any_pyramid": True}


def fitting_any_pyramid() -> list[str]:
    """The decoders that can be suggested when another cannot be built on a backbone."""
    return [name for name in DECODERS.names() if (DECODERS.info(name) or {}).get("fits_any_pyramid")]
