"""Boundary IoU (Cheng et al. 2021, "Boundary IoU: Improving Object-Centric Image Segmentation Evaluation").

A mask's boundary region is the set of its pixels within ``d`` of its contour, ``d`` a fraction of the image
diagonal (the paper's 2%, at least one pixel); the image border counts as contour, as in the paper's
reference code (which pads with zeros and erodes with a 3x3 kernel ``d`` times: a square, Chebyshev ball).
Per class, the intersection and union of the truth's and the prediction's boundary regions are summed over
the split (as the confusion matrix is for mIoU), counting only labelled pixels; ignored pixels are in no
class's truth. The erosion is two 1-D max-pools, so a pixel costs ``O(d)``, not ``O(d^2)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def boundary_width(height: int, width: int, ratio: float) -> int:
    return max(1, round(ratio * math.hypot(height, width)))


def boundary_region(masks: torch.Tensor, d: int) -> torch.Tensor:
    """(N, C, H, W) booleans -> the pixels of each mask within ``d`` (Chebyshev) of its contour or the border."""
    outside = F.pad((~masks).float(), (d, d, d, d), value=1.0)
    n, c, h, w = outside.shape
    near = F.max_pool2d(outside.reshape(n * c, 1, h, w), (1, 2 * d + 1), stride=1)
    near = F.max_pool2d(near, (2 * d + 1, 1), stride=1).reshape(masks.shape)
    return masks & (near > 0)


def boundary_counts(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int,
                    ratio: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the (intersection, union) pixel counts of truth and prediction boundary regions in a batch of
    (N, H, W) class maps of one size."""
    d = boundary_width(*targets.shape[-2:], ratio)
    classes = torch.arange(num_classes, device=targets.device).view(1, -1, 1, 1)
    valid = (targets != ignore_index).unsqueeze(1)
    truth = boundary_region(targets.unsqueeze(1) == classes, d) & valid
    predicted = boundary_region(predictions.unsqueeze(1) == classes, d) & valid
    return (truth & predicted).sum(dim=(0, 2, 3)), (truth | predicted).sum(dim=(0, 2, 3))
