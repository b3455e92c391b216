"""The house rules CI enforces beside lint-imports: no import cycle (function-level imports included), file names a
reader cannot confuse, and a public API whose every name imports, old names included (with one warning each)."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import grimp
import numpy as np
import pytest

import segmodels
from segmodels import deprecation

PACKAGE = Path(segmodels.__file__).parent


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each old name warns once per process: forget which did, so each test sees its own."""
    deprecation._warned.clear()


def test_no_import_cycle_among_segmodels_modules():
    graph = grimp.build_graph("segmodels")  # reads every import statement, inside functions too
    cycles = [(module, other) for module in sorted(graph.modules)
              for other in graph.find_modules_directly_imported_by(module)
              if graph.chain_exists(importer=other, imported=module)]
    assert cycles == []


def test_no_near_twin_module_names():
    """One file per idea: no two modules share a name (each package's three-line ``registry.py`` excepted), and none
    looks like a test to pytest."""
    stems = [p.stem for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "registry")]
    assert sorted({s for s in stems if stems.count(s) > 1}) == []
    assert [s for s in stems if s.startswith("test_") or s.endswith("_test")] == []


def test_every_public_name_imports():
    for name in segmodels.__all__:
        assert getattr(segmodels, name) is not None, name


@pytest.mark.parametrize("old", sorted(deprecation.MOVED))
def test_old_module_names_import_as_the_new_module_with_a_warning(old):
    new = deprecation.new_name(old)
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*use {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_renamed_attributes_and_methods_warn_and_still_work():
    from segmodels import SegmentationModule
    from segmodels.cli.train import train
    from segmodels.training.callbacks import ReportFiles

    with pytest.warns(FutureWarning, match="segmodels.training.train is deprecated.*use segmodels.cli.train.train"):
        from segmodels.training import train as old_train
    assert old_train is train
    with pytest.warns(FutureWarning, match="TestReport is deprecated.*ReportFiles"):
        from segmodels.training.callbacks import TestReport
    assert TestReport is ReportFiles
    from segmodels.io.init_from import load_matching

    with pytest.warns(FutureWarning, match="checkpoint_reader.load_matching is deprecated.*segmodels.io.init_from"):
        from segmodels.io.checkpoint_reader import load_matching as old_load_matching
    assert old_load_matching is load_matching
    module = SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=3, pretrained=False,
                                decoder_kwargs={"decoder_channels": [8, 8, 8, 8]})
    image = np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8)
    with pytest.warns(FutureWarning, match="SegmentationModule.predict is deprecated.*segment"):
        mask = module.predict(image)
    np.testing.assert_array_equal(mask, module.segment(image))


def test_python_dash_m_runs_an_old_module_name(tmp_path):
    run = subprocess.run([sys.executable, "-m", "segmodels.sweep_report", str(tmp_path)], capture_output=True, text=True)
    assert "segmodels.sweep_report is deprecated" in run.stderr
    assert f"no job folders (with a .hydra folder) in {tmp_path}" in run.stderr  # the new module's code ran


def test_datamodules_inspect_and_mean_assignment_still_work(tmp_path):
    from datamodules import make_demo_dataset
    from datamodules.datamodule import VOCSegmentationDataModule

    root = make_demo_dataset(tmp_path / "demo", splits={"train": 4, "val": 2, "test": 2}, size=32)
    run = subprocess.run([sys.executable, "-m", "datamodules.inspect", str(root), "--splits", "train"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "datamodules.inspect is deprecated" in run.stderr and "train" in run.stdout
    data = VOCSegmentationDataModule(root, num_classes=4, backbone="resnet18")
    with pytest.warns(FutureWarning, match=r"assigning datamodule.mean is deprecated; pass mean=\[...\]"):
        data.mean = [0.5, 0.5, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        data.std = [0.25, 0.25, 0.25]
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.25, 0.25, 0.25)


def test_the_lightning_floor_admits_no_version_without_what_the_code_uses():
    """EMAWeightAveraging (ema.decay) and fit_loop.restarted_mid_epoch (ExactResume) came with Lightning 2.6: a floor
    below it installs a Lightning on which train.py does not import."""
    from importlib.metadata import requires

    from lightning.pytorch.callbacks import EMAWeightAveraging  # noqa: F401
    from packaging.requirements import Requirement

    (lightning,) = [Requirement(r) for r in requires("segmodels") if Requirement(r).name == "lightning"]
    assert "2.5.9" not in lightning.specifier and "2.6.0" in lightning.specifier
