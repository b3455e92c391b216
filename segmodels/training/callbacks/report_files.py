"""After ``trainer.test``: the confusion matrix and IoU chart written into the run folder."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from segmodels.evaluation.report import write_score_files


class ReportFiles(L.Callback):
    """After ``trainer.test``: ``confusion_matrix.csv``, ``confusion_matrix.png`` and ``iou.png`` in ``output_dir``
    (the same writer as evaluate.py's)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = getattr(pl_module, "test_scores", None)
        if scores:
            write_score_files(self.output_dir, scores)
