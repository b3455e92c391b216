"""Names that moved keep working, with one warning each naming the new place.

Public names are a promise: a user's ``import segmodels.module``, ``python -m segmodels.sweep_report`` or
``module.predict(image)`` written against an earlier layout still runs. ``MOVED`` maps each old module to its new
home (a package entry covers its submodules too); ``install`` puts a finder on ``sys.meta_path`` that answers an old
name with the new module itself (one object, so ``isinstance`` and registries stay one), and for ``python -m`` runs
the new module's code.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# old module -> new module, for everything the flat layout (and the ones before it) had
MOVED = {
    "segmodels.backbones": "segmodels.models.backbones",
    "segmodels.decoders": "segmodels.models.decoders",
    "segmodels.stages": "segmodels.models.backbones.stages",
    "segmodels.model": "segmodels.models.segmentation_model",
    "segmodels.build": "segmodels.models.factory",
    "segmodels.lora": "segmodels.models.lora",
    "segmodels.probabilities": "segmodels.models.inference",
    "segmodels.module": "segmodels.training.segmentation_module",
    "segmodels.losses": "segmodels.training.losses",
    "segmodels.optim": "segmodels.training.optimizers",
    "segmodels.callbacks": "segmodels.training.callbacks",
    "segmodels.callbacks.checkpoint": "segmodels.training.callbacks.latest_checkpoint",
    "segmodels.callbacks.test_report": "segmodels.training.callbacks.report_files",
    "segmodels.metrics": "segmodels.evaluation.metrics",
    "segmodels.boundary": "segmodels.evaluation.boundary",
    "segmodels.calibration": "segmodels.evaluation.calibration",
    "segmodels.plots": "segmodels.evaluation.plots",
    "segmodels.visualize": "segmodels.evaluation.pictures",
    "segmodels.checkpoints": "segmodels.io.checkpoint_reader",
    "segmodels.init_from": "segmodels.io.checkpoint_reader",
    "segmodels.checkpoint_io": "segmodels.io.checkpoint_writer",
    "segmodels.pretrained": "segmodels.io.model_folder",
    "segmodels.export": "segmodels.cli.export",
    "segmodels.mask_files": "segmodels.cli.predict",
    "segmodels.prediction": "segmodels.cli.predict",
    "segmodels.console": "segmodels.cli.console",
    "segmodels.resolvers": "segmodels.cli.resolvers",
    "segmodels.config_options": "segmodels.cli.config_options",
    "segmodels.sweep_report": "segmodels.cli.sweep_report",
    "segmodels.report": "segmodels.cli.sweep_report",
}

_warned: set[str] = set()


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """One FutureWarning per old name and process (shown to users, unlike DeprecationWarning)."""
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(f"{old} is deprecated and will be removed; use {new}", FutureWarning, stacklevel=stacklevel)


def new_name(old: str) -> str | None:
    """Where ``old`` (a module name) lives now, or None if it did not move."""
    for before in sorted(MOVED, key=len, reverse=True):  # the most specific entry first
        if old == before or old.startswith(before + "."):
            return MOVED[before] + old[len(before):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module ran when it was imported."""

    def get_code(self, name: str):  # python -m <old name>
        spec = importlib.util.find_spec(self.new)
        return spec.loader.get_code(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path=None, target=None):
        new = new_name(name)
        if new is None or name in MOVED.values():
            return None
        warn_renamed(name, new, stacklevel=4)
        spec = importlib.util.find_spec(new)
        if spec is None:
            return None
        return importlib.util.spec_from_loader(name, _Alias(new), is_package=spec.submodule_search_locations is not None)


def install() -> None:
    """Answer the old module names (once per process)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def moved_attribute(package: str, renamed: dict[str, str], name: str):
    """For a module's ``__getattr__``: the object an old attribute name now is (``renamed`` maps old names to
    ``"new.module.name"`` paths), with the warning; an AttributeError for anything else."""
    if name not in renamed:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    warn_renamed(f"{package}.{name}", renamed[name], stacklevel=4)
    module, _, attribute = renamed[name].rpartition(".")
    return getattr(importlib.import_module(module), attribute)
