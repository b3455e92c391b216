"""The data side: folders in PASCAL VOC layout -> batches of normalised images and index masks."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network on import

from .datamodule import VOCSegmentationDataModule  # noqa: E402
from .dataset import VOCSegmentationDataset  # noqa: E402
from .demo import DEMO_CLASSES, DemoSegmentationDataModule, make_demo_dataset  # noqa: E402

__all__ = [
    "DEMO_CLASSES",
    "DemoSegmentationDataModule",
    "VOCSegmentationDataModule",
    "VOCSegmentationDataset",
    "make_demo_dataset",
]
