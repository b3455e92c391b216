"""Colours for class-index masks and the image / truth / prediction grids logged during validation."""
from __future__ import annotations

import torch
from torchvision.utils import make_grid

from datamodules.palette import voc_palette


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) class indices -> (N, 3, H, W) floats in [0, 1] in VOC colours (255 = ignore, cream)."""
    palette = torch.as_tensor(voc_palette(), device=mask.device, dtype=torch.float32) / 255
    return palette[mask.long().clamp(0, 255)].permute(0, 3, 1, 2)


def denormalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Back to [0, 1] RGB for display; inputs with other channel counts show their first channel as grey."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    images = (images.float() * std_t + mean_t).clamp(0, 1)
    return images if images.shape[1] == 3 else images[:, :1].expand(-1, 3, -1, -1)


def blend(images: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Class colours over the image where the mask is not background (0)."""
    labelled = (masks > 0).unsqueeze(1)
    return torch.where(labelled, (1 - alpha) * images + alpha * colorize(masks), images)


def prediction_grid(images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor, mean, std) -> torch.Tensor:
    """One row per sample: the image, ground truth over it, prediction over it."""
    pictures = denormalize(images, mean, std)
    rows = torch.stack([pictures, blend(pictures, masks), blend(pictures, predictions)], dim=1)
    return make_grid(rows.flatten(0, 1), nrow=3, padding=2)
