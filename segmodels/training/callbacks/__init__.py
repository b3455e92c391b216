"""Lightning callbacks, one file each; ``conf/callbacks/`` selects them."""
from segmodels.deprecation import moved_attribute

from .freeze import FreezeBackbone
from .latest_checkpoint import LatestCheckpoint
from .nonfinite import StopOnNonFiniteLoss
from .rank_sync import CheckRanksInSync
from .report_files import ReportFiles
from .resume import ExactResume

__all__ = ["CheckRanksInSync", "ExactResume", "FreezeBackbone", "LatestCheckpoint", "ReportFiles", "StopOnNonFiniteLoss"]

RENAMED = {"TestReport": "segmodels.training.callbacks.ReportFiles"}  # its name matched pytest's Test* pattern


def __getattr__(name: str):
    return moved_attribute(__name__, RENAMED, name)
