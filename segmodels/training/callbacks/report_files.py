"""After ``trainer.test``: the confusion matrix, the IoU chart and each test image's confusion counts written into
the run folder."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from segmodels.evaluation.report import write_per_image_confusion, write_score_files

log = logging.getLogger(__name__)


class ReportFiles(L.Callback):
    """After ``trainer.test``: ``confusion_matrix.csv``, ``confusion_matrix.png`` and ``iou.png`` in ``output_dir``
    (the same writer as evaluate.py's), and ``test_confusion_per_image.npz`` for paired comparisons."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = getattr(pl_module, "test_scores", None)
        if scores:
            write_score_files(self.output_dir, scores)
        confusion = getattr(pl_module, "test_confusion_per_image", None)
        if confusion is None:
            return
        dataset = getattr(trainer.datamodule, "datasets", {}).get("test")
        ids = list(dataset.ids) if dataset is not None else [str(i) for i in range(len(confusion))]
        ids = ids[: len(confusion)]  # the test loader keeps the split's order; limit_test_batches may stop it early
        confusion = confusion[: len(ids)]  # under DDP the sampler pads the last share with repeats
        write_per_image_confusion(self.output_dir, confusion.numpy(), ids)
