"""albumentations pipelines: augmentation for training, the original image size for evaluation."""
from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2


def default_augmentations(
    crop_size: int, ignore_index: int = 255, scale_range: Sequence[float] = (0.5, 2.0), photometric: bool = True
) -> list[A.BasicTransform]:
    """Random scale, pad to the crop (the mask with ``ignore_index``, never a class), crop, flip, jitter."""
    low, high = scale_range
    augmentations = [
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0),
        A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
        A.RandomCrop(crop_size, crop_size),
        A.HorizontalFlip(p=0.5),
    ]
    if photometric:  # colour jitter is defined for RGB inputs only
        augmentations.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5))
    return augmentations


def train_transforms(
    crop_size: int,
    ignore_index: int = 255,
    scale_range: Sequence[float] = (0.5, 2.0),
    augmentations: Sequence[A.BasicTransform] | None = None,
    photometric: bool = True,
) -> A.Compose:
    """``augmentations`` (default: ``default_augmentations``), then uint8 CHW tensors.

    Normalisation is left to the device (``VOCSegmentationDataModule.on_after_batch_transfer``): uint8
    batches are a quarter of the bytes to collate, pin and copy, and the workers skip a float pass.
    """
    if augmentations is None:
        augmentations = default_augmentations(crop_size, ignore_index, scale_range, photometric)
    return A.Compose([*augmentations, ToTensorV2()])


def eval_transforms() -> A.Compose:
    """No resizing or cropping, so metrics are computed on the original masks, as published ones are."""
    return A.Compose([ToTensorV2()])
