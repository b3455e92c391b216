"""Input normalisation: the statistics a backbone's pretrained weights expect, applied on the device.

The data side never imports a model package. A backbone's statistics are found by its name through
the ``datamodules.normalizations`` entry points that model packages declare (segmodels declares one
for every backbone it registers, timm's included), so ``VOCSegmentationDataModule(root,
backbone="efficientnet_lite0")`` normalises as that backbone's weights want, in a notebook too.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Sequence

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENTRY_POINTS = "datamodules.normalizations"


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def for_channels(self, channels: int) -> "Normalization":
        """Statistics for ``channels`` inputs, cycling the RGB values the way a pretrained first conv is
        adapted to other channel counts (timm's ``adapt_input_conv``)."""
        return Normalization(
            tuple(self.mean[i % len(self.mean)] for i in range(channels)),
            tuple(self.std[i % len(self.std)] for i in range(channels)),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float on the images' device: (x / 255 - mean) / std as one multiply-add."""
        scale, shift = _affine(images.device, self.mean, self.std)
        return images.float() * scale - shift


_AFFINES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _affine(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    key = (device, mean, std)
    if key not in _AFFINES:  # built once per device: no host-to-device copy per batch
        mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
        _AFFINES[key] = (1 / (255 * std_t), mean_t / std_t)
    return _AFFINES[key]


def backbone_normalization(backbone: str) -> Normalization:
    """The statistics of the backbone registered as ``backbone`` in any installed model package."""
    providers = list(entry_points(group=ENTRY_POINTS))
    for provider in providers:
        found = provider.load()(backbone)
        if found is not None:
            return Normalization(tuple(found[0]), tuple(found[1]))
    names = ", ".join(p.value for p in providers) or "none installed"
    raise KeyError(
        f"no model package knows a backbone named '{backbone}' (asked: {names}); check the name "
        f"(segmodels.list_backbones(), or any timm model name), or give mean=[...] and std=[...] instead"
    )


def resolve_normalization(
    backbone: str | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Normalization:
    """Explicit ``mean``/``std`` win; otherwise the backbone's; never a silent default."""
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean and std or neither (got mean={mean}, std={std})")
    if mean is not None:
        return Normalization(tuple(mean), tuple(std))
    if backbone:
        return backbone_normalization(backbone)
    raise ValueError(
        "the datamodule does not know how to normalise images: give backbone=<the model's backbone name> "
        f"(its weights' statistics are looked up), or mean=[...] and std=[...] (ImageNet's: {IMAGENET_MEAN}, {IMAGENET_STD})"
    )
