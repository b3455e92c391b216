"""Lightning callbacks, one file each; ``conf/callbacks/`` selects them."""
from .checkpoint import LatestCheckpoint
from .freeze import FreezeBackbone
from .nonfinite import StopOnNonFiniteLoss
from .rank_sync import CheckRanksInSync
from .resume import ExactResume
from .test_report import TestReport

__all__ = ["CheckRanksInSync", "ExactResume", "FreezeBackbone", "LatestCheckpoint", "StopOnNonFiniteLoss", "TestReport"]
