"""The one writer of what a split's scores become: metrics.json's numbers, the per-image table, the confusion
matrix and IoU chart (also what training's test writes), the reliability diagram and the worst images."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .metrics import confusion_of, scores_from_confusion
from .plots import plot_confusion, plot_iou, plot_reliability, plot_worst, write_confusion_csv

SUMMARY_SCORES = ("mIoU", "pixel_accuracy", "mean_accuracy", "mean_dice")
PER_IMAGE_CONFUSION = "test_confusion_per_image.npz"  # what segmodels.cli.compare reads


def scores_report(scores: dict[str, torch.Tensor], class_names: list[str]) -> dict[str, Any]:
    """Plain numbers for metrics.json: the summary scores, per-class IoU, Dice and boundary IoU, ECE, the
    confusion matrix and the calibration bins."""
    return {
        **{name: scores[name].item() for name in (*SUMMARY_SCORES, "mean_boundary_iou", "ece")},
        "iou": dict(zip(class_names, scores["iou"].tolist())),
        "dice": dict(zip(class_names, scores["dice"].tolist())),
        "boundary_iou": dict(zip(class_names, scores["boundary_iou"].tolist())),
        "confusion": scores["confusion"].long().tolist(),
        "calibration_bins": dict(zip(("pixels", "confidence_sum", "correct_sum"), scores["calibration"].tolist())),
    }


def image_scores(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[float, float]:
    """One image's pixel accuracy and mIoU over the classes present in its truth or prediction (labelled pixels)."""
    return confusion_scores(confusion_of(prediction, target, num_classes, ignore_index))


def confusion_scores(confusion: torch.Tensor) -> tuple[float, float]:
    """Pixel accuracy and mIoU of one image's confusion counts (NaN for an image without a labelled pixel)."""
    if confusion.sum() == 0:  # no labelled pixel: no score
        return float("nan"), float("nan")
    scores = scores_from_confusion(confusion)  # classes absent from truth and prediction have no IoU
    return scores["pixel_accuracy"].item(), scores["mIoU"].item()


def write_per_image_confusion(output: Path, confusion: np.ndarray, ids: list[str]) -> Path:
    """Each test image's (C, C) confusion counts and its id, compressed (mostly zeros: 21 classes x 1,449 VOC val
    images are 5.1 MB as int64 and far less compressed; docs: Studies)."""
    output.mkdir(parents=True, exist_ok=True)
    if len(ids) != len(confusion):
        raise ValueError(f"{len(confusion)} per-image confusion matrices for {len(ids)} ids")
    path = output / PER_IMAGE_CONFUSION
    np.savez_compressed(path, confusion=np.asarray(confusion, dtype=np.int64), ids=np.asarray(ids))
    return path


def write_score_files(output: Path, metrics: dict[str, Any], counts: bool = False) -> None:
    """``confusion_matrix.csv``, ``confusion_matrix.png`` (pixel counts in its cells too with ``counts``) and
    ``iou.png`` from a ``scores_report``."""
    output.mkdir(parents=True, exist_ok=True)
    names = list(metrics["iou"])
    write_confusion_csv(output / "confusion_matrix.csv", metrics["confusion"], names)
    plot_confusion(output / "confusion_matrix.png", metrics["confusion"], names, counts)
    plot_iou(output / "iou.png", metrics["iou"])


def write_evaluation_files(output: Path, metrics: dict, rows: list[dict], gallery: list, ids: list[str],
                           counts: bool = False) -> None:
    """evaluate.py's files: metrics.json, per_image.csv, the score files, reliability.png and worst.png."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with (output / "per_image.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "height", "width", "pixel_accuracy", "mIoU"])
        writer.writeheader()
        writer.writerows(rows)
    write_score_files(output, metrics, counts)
    plot_reliability(output / "reliability.png", metrics["calibration_bins"], metrics["ece"])
    if gallery:
        plot_worst(output / "worst.png", [(ids[index], -negative, image, truth, prediction)
                                          for negative, index, image, truth, prediction in gallery])
