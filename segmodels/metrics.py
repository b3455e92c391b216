"""Segmentation scores from one confusion matrix accumulated over the whole split."""
from __future__ import annotations

import torch


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU and Dice per class and their means, pixel and mean class accuracy, from a (target, prediction)
    count matrix.

    A class absent from both target and prediction has no IoU (NaN) and is left out of the mean,
    rather than counting as 0.
    """
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    target_total = confusion.sum(dim=1)
    predicted_total = confusion.sum(dim=0)
    union = target_total + predicted_total - true_positive
    nan = torch.tensor(float("nan"), dtype=confusion.dtype, device=confusion.device)
    iou = torch.where(union > 0, true_positive / union.clamp(min=1), nan)
    class_accuracy = torch.where(target_total > 0, true_positive / target_total.clamp(min=1), nan)
    dice = torch.where(union > 0, 2 * true_positive / (union + true_positive).clamp(min=1), nan)
    return {
        "confusion": confusion,
        "iou": iou,
        "mIoU": iou.nanmean(),
        "dice": dice,
        "mean_dice": dice.nanmean(),
        "pixel_accuracy": true_positive.sum() / confusion.sum().clamp(min=1),
        "mean_accuracy": class_accuracy.nanmean(),
    }


def format_iou_table(iou: torch.Tensor, class_names: list[str]) -> str:
    width = max(len(n) for n in [*class_names, "class"])
    lines = [f"{'class':<{width}}  IoU", f"{'-' * width}  ------"]
    for name, value in zip(class_names, iou.tolist()):
        lines.append(f"{name:<{width}}  " + ("   n/a" if value != value else f"{100 * value:6.2f}"))
    mean = iou.nanmean().item()
    lines.append(f"{'mean':<{width}}  {100 * mean:6.2f}")
    return "\n".join(lines)
