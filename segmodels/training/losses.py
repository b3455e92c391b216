"""Segmentation losses by name; each takes (logits, target) with ignored pixels marked ``ignore_index``."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segmodels.registry import Registry

LOSSES: Registry = Registry("loss")


@LOSSES.register("ce")
class CrossEntropy(nn.Module):
    """Cross-entropy over labelled pixels, optionally class-weighted (median frequency, say).

    ``reduction="sum"`` sums over pixels, as the original FCN does (its learning rates assume it)."""

    def __init__(self, ignore_index: int = 255, class_weights: Sequence[float] | None = None, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"loss.reduction={reduction!r}: use 'mean' or 'sum'")
        self.ignore_index, self.reduction = ignore_index, reduction
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("weight", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


@LOSSES.register("dice")
class Dice(nn.Module):
    """1 - soft Dice, averaged over the classes present in the batch's labels or predictions."""

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if class_weights is not None:  # taking them and dropping them would train other than asked
            raise ValueError(
                "loss=dice takes no class_weights (Dice already counts every present class alike); drop "
                "class_weights, or use loss=ce_dice, whose cross-entropy part takes them"
            )
        self.ignore_index, self.smooth = ignore_index, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)
        probabilities = logits.float().softmax(dim=1) * valid
        one_hot = F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        intersection = (probabilities * one_hot).sum(dims)
        total = probabilities.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        present = (total > 0).float()  # a mask, not an index or an if: no wait on the device per step
        return ((1 - dice) * present).sum() / present.sum().clamp(min=1)


@LOSSES.register("focal")
class Focal(nn.Module):
    """Focal loss (Lin et al.): cross-entropy scaled by (1 - p_t)^gamma, down-weighting easy pixels."""

    def __init__(self, ignore_index: int = 255, gamma: float = 2.0, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.ce = CrossEntropy(ignore_index, class_weights)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits, target, ignore_index=self.ce.ignore_index, reduction="none")
        valid = target != self.ce.ignore_index
        focal = (1 - torch.exp(-per_pixel)) ** self.gamma * per_pixel  # exp(-CE) is p_t
        if self.ce.weight is not None:
            focal = focal * self.ce.weight[target.clamp(0, logits.shape[1] - 1)]
        return focal.sum() / valid.sum().clamp(min=1)  # ignored pixels add 0; no wait on the device per step


@LOSSES.register("ce_dice")
class CrossEntropyDice(nn.Module):
    """Cross-entropy plus ``dice_weight`` x Dice."""

    def __init__(self, ignore_index: int = 255, dice_weight: float = 1.0, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.ce, self.dice, self.dice_weight = CrossEntropy(ignore_index, class_weights), Dice(ignore_index), dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def build_loss(name: str, ignore_index: int, class_weights: Sequence[float] | None = None, **options) -> nn.Module:
    return LOSSES.get(name)(ignore_index=ignore_index, class_weights=class_weights, **options)
