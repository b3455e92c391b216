"""The files a test leaves: the confusion matrix as CSV and PNG, and a per-class IoU chart."""
from __future__ import annotations

import csv
from pathlib import Path


def write_confusion_csv(path: Path, confusion: list[list[int]], class_names: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["target \\ prediction", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *row])


def plot_confusion(path: Path, confusion: list[list[int]], class_names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(confusion, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # share of each true class
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("prediction")
    axis.set_ylabel("target")
    axis.set_title("confusion (rows: share of each target class)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_iou(path: Path, iou: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(iou)
    values = [0.0 if v != v else 100 * v for v in iou.values()]
    figure, axis = plt.subplots(figsize=(max(4.0, 0.4 * len(names) + 2), 4))
    axis.bar(range(len(names)), values, color="tab:blue")
    axis.set_xticks(range(len(names)), names, rotation=90)
    axis.set_ylabel("IoU (%)")
    axis.set_ylim(0, 100)
    finite = [v for v in iou.values() if v == v]
    axis.set_title(f"per-class IoU, mean {100 * sum(finite) / max(1, len(finite)):.2f}%")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
