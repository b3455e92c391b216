"""After ``trainer.test``: the confusion matrix and IoU chart written into the run folder."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from ..plots import plot_confusion, plot_iou, write_confusion_csv


class TestReport(L.Callback):
    """After ``trainer.test``: ``confusion_matrix.csv``, ``confusion_matrix.png`` and ``iou.png`` in ``output_dir``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = getattr(pl_module, "test_scores", None)
        if not scores:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = list(scores["iou"])
        write_confusion_csv(self.output_dir / "confusion_matrix.csv", scores["confusion"], names)
        plot_confusion(self.output_dir / "confusion_matrix.png", scores["confusion"], names)
        plot_iou(self.output_dir / "iou.png", scores["iou"])
