"""Scores and the files and pictures they become: metrics, boundary IoU, calibration, plots, the report writer."""
from segmodels.deprecation import moved_attribute

from .metrics import SegmentationScores, confusion_of, scores_from_confusion

__all__ = ["SegmentationScores", "confusion_of", "scores_from_confusion"]

# segmodels.evaluation was the module of evaluate(); it is segmodels.cli.evaluate now (resolved at first use, so
# this layer never imports the one above it)
RENAMED = {"evaluate": "segmodels.cli.evaluate.evaluate",
           "evaluation_datamodule": "segmodels.cli.evaluate.evaluation_datamodule",
           "image_scores": "segmodels.evaluation.report.image_scores",
           "write_files": "segmodels.evaluation.report.write_evaluation_files"}


def __getattr__(name: str):
    return moved_attribute(__name__, RENAMED, name)
