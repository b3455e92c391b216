"""The files a test or an evaluation leaves: the confusion matrix as CSV and PNG, a per-class IoU chart, the
reliability diagram and the gallery of worst images."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from datamodules.palette import voc_palette


def new_figure(*grid: int, **options: Any) -> tuple[Figure, Any]:
    """A figure and its axes, drawn off-screen: matplotlib's object API, so no backend is switched and no pyplot
    state is touched (a notebook's inline plots keep working). The one set-up every picture here uses."""
    figure = Figure(**{key: value for key, value in options.items() if key == "figsize"})
    axes = figure.subplots(*grid, **{key: value for key, value in options.items() if key != "figsize"})
    return figure, axes


def write_confusion_csv(path: Path, confusion: list[list[int]], class_names: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["target \\ prediction", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *row])


TEXT_LIMIT, TICK_LIMIT, MAX_INCHES = 40, 200, 30.0  # the confusion matrix's cell numbers, class names and size


def plot_confusion(path: Path, confusion: list[list[int]], class_names: list[str], counts: bool = False) -> Figure:
    """Rows are the target classes, each normalised to its share; every cell prints its share in percent (and its
    pixel count with ``counts``), in white on dark cells, as scikit-learn's ConfusionMatrixDisplay does. Past
    ``TEXT_LIMIT`` classes the cells are colour only and the figure stops growing (ADE20K's 150 classes would print
    22,500 numbers nobody can read, and a 300-class matrix took minutes to draw); confusion_matrix.csv keeps them."""
    pixels = np.asarray(confusion, dtype=float)
    rows = pixels / np.maximum(pixels.sum(axis=1, keepdims=True), 1)  # share of each true class
    classes = len(class_names)
    cell = 0.55 if counts else 0.45
    size = min(MAX_INCHES, max(4.5, cell * classes + 2.5))
    figure, axis = new_figure(figsize=(size, size))
    image = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    text_size = max(4.0, min(9.0, 110 / max(classes, 1)))
    written = range(classes) if classes <= TEXT_LIMIT else range(0)
    for target in written:
        for predicted in written:
            share = rows[target, predicted]
            label = f"{100 * share:.1f}" + (f"\n{int(pixels[target, predicted]):,}" if counts else "")
            axis.text(predicted, target, label, ha="center", va="center", fontsize=text_size,
                      color="white" if share > 0.5 else "black")
    if classes <= TICK_LIMIT:
        axis.set_xticks(range(classes), class_names, rotation=90, fontsize=min(10.0, 900 / max(classes, 1)))
        axis.set_yticks(range(classes), class_names, fontsize=min(10.0, 900 / max(classes, 1)))
    axis.set_xlabel("predicted class")
    axis.set_ylabel("target class")
    axis.set_title("confusion matrix\n(% of each target class's pixels)", fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the target class")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    return figure


def plot_iou(path: Path, iou: dict[str, float]) -> None:
    names = list(iou)
    values = [0.0 if v != v else 100 * v for v in iou.values()]
    figure, axis = new_figure(figsize=(min(MAX_INCHES * 2, max(4.0, 0.4 * len(names) + 2)), 4))
    axis.bar(range(len(names)), values, color="tab:blue")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=min(10.0, 1800 / max(len(names), 1)))
    axis.set_ylabel("IoU (%)")
    axis.set_ylim(0, 100)
    finite = [v for v in iou.values() if v == v]
    axis.set_title(f"per-class IoU, mean {100 * sum(finite) / max(1, len(finite)):.2f}%")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_reliability(path: Path, bins: dict[str, list[float]], ece: float) -> None:
    """The calibration diagram: accuracy against mean confidence per bin, the diagonal being perfect."""
    pixels, confidence, correct = (np.asarray(bins[k], dtype=float) for k in ("pixels", "confidence_sum", "correct_sum"))
    count = len(pixels)
    edges = np.linspace(0, 1, count + 1)
    filled = pixels > 0
    accuracy = np.divide(correct, pixels, out=np.zeros_like(correct), where=filled)
    mean_confidence = np.divide(confidence, pixels, out=np.zeros_like(confidence), where=filled)
    figure, axis = new_figure(figsize=(5, 5))
    axis.bar(edges[:-1], accuracy, width=1 / count, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
    axis.bar(edges[:-1][filled], (mean_confidence - accuracy)[filled], bottom=accuracy[filled], width=1 / count,
             align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
    axis.plot([0, 1], [0, 1], "k--", linewidth=1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_title(f"reliability over labelled pixels, ECE {100 * ece:.2f}%")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_worst(path: Path, entries: list) -> None:
    """One row per image, worst first: the image, the truth and the prediction in VOC colours."""
    palette = voc_palette()
    figure, axes = new_figure(len(entries), 3, figsize=(9, 3 * len(entries)), squeeze=False)
    for row, (name, miou, image, truth, prediction) in zip(axes, entries):
        picture = image.permute(1, 2, 0).numpy()
        picture = picture[..., :3] if picture.shape[-1] >= 3 else picture[..., 0]
        row[0].imshow(picture, cmap=None if picture.ndim == 3 else "gray")
        row[0].set_title(f"{name}: mIoU {100 * miou:.1f}%", fontsize=9)
        row[1].imshow(palette[truth.numpy()])
        row[1].set_title("truth", fontsize=9)
        row[2].imshow(palette[prediction.numpy()])
        row[2].set_title("prediction", fontsize=9)
        for axis in row:
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
