"""What Lightning runs: the LightningModule, its losses, optimisers and schedules, and the callbacks."""
from segmodels.deprecation import moved_attribute

from .segmentation_module import SegmentationModule

__all__ = ["SegmentationModule"]

# segmodels.training was the module of train(); the scripts' work is in segmodels.cli now. The old names resolve
# lazily (by name, at first use) so that this layer never imports the one above it.
RENAMED = {name: f"segmodels.cli.train.{name}" for name in
           ("train", "build_module", "build_callbacks", "apply_speed_options", "resume_path", "out_of_memory_advice")}


def __getattr__(name: str):
    return moved_attribute(__name__, RENAMED, name)
