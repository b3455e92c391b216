"""Checkpoints that cannot run code (issue 26): every entry point opens a .ckpt with weights_only, refuses one whose
pickle asks for anything else before any of it runs, and loads it only when told ``trust_checkpoint=true``."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from segmodels import SegmentationModule
from segmodels.cli.evaluate import evaluate
from segmodels.cli.export import export
from segmodels.cli.predict import predict_folder
from segmodels.cli.train import train
from tests.helpers import ROOT, compose_train, subprocess_env, tiny_overrides


class Payload:
    """Unpickling this calls ``open(marker, "w")``: what a hostile file would do, made visible."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def hostile(trained_run, tmp_path):
    """A real checkpoint of the tiny run with one extra entry whose unpickling creates ``marker``."""
    _, metrics = trained_run
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    marker = tmp_path / "payload_ran"
    checkpoint["extra"] = Payload(marker)
    path = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, path)
    return path, marker


REFUSAL = r"hostile.ckpt.* asks for io\.open.*trust_checkpoint=true"


def test_a_hostile_checkpoint_is_refused_everywhere_before_it_runs(hostile, trained_run, tiny_demo, tmp_path):
    path, marker = hostile
    entries = {
        "load_from_checkpoint": lambda: SegmentationModule.load_from_checkpoint(str(path)),
        "restore": lambda: SegmentationModule.restore(str(path)),
        "evaluate": lambda: evaluate(str(path), tmp_path / "evaluation"),
        "predict": lambda: predict_folder(str(path), str(tiny_demo / "JPEGImages"), str(tmp_path / "masks")),
        "export": lambda: export(str(path), str(tmp_path / "model.onnx")),
        "init_from": lambda: train(compose_train(tiny_overrides(tiny_demo, tmp_path / "init", f"model.init_from={path}"))),
        "resume": lambda: train(compose_train(tiny_overrides(tiny_demo, tmp_path / "resume", f"ckpt_path={path}"))),
    }
    for name, entry in entries.items():
        with pytest.raises(ValueError, match=REFUSAL):
            entry()
        assert not marker.exists(), f"{name} ran the payload"
    assert not (tmp_path / "init" / "metrics.json").exists()  # the run stopped instead of going on
    result = subprocess.run([sys.executable, "evaluate.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'cli'}"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "asks for io.open" in result.stderr and "trust_checkpoint=true" in result.stderr
    assert not marker.exists()


def test_the_checkpoints_this_project_writes_need_no_trust(trained_run):
    _, metrics = trained_run
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(
            str(trained_run[0] / "checkpoints" / name)) == []


def test_trust_checkpoint_loads_an_old_file_that_needs_it(trained_run, tmp_path):
    _, metrics = trained_run
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    checkpoint["hparams_namespace"] = argparse.Namespace(lr=0.1)  # what older Lightning scripts saved
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.raises(ValueError, match=r"old.ckpt.* asks for argparse\.Namespace.*trust_checkpoint=true"):
        SegmentationModule.restore(str(old))
    module = SegmentationModule.restore(str(old), trust=True)
    reference = SegmentationModule.restore(metrics["best_checkpoint"])
    for (name, value), expected in zip(module.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), name
    loaded = SegmentationModule.load_from_checkpoint(str(old), trust_checkpoint=True)
    assert torch.equal(next(loaded.parameters()), next(reference.parameters()))


def test_a_checkpoints_dataset_config_is_instantiated_only_for_this_projects_datamodules(trained_run, tmp_path):
    from segmodels.cli.evaluate import evaluation_datamodule

    module = SegmentationModule.restore(trained_run[1]["best_checkpoint"])
    module.datamodule_config = {**module.datamodule_config, "_target_": "os.system", "command": "touch hacked"}
    with pytest.raises(ValueError, match=r"dataset config names _target_=os.system.* not one of this project's datamodules"):
        evaluation_datamodule(module, None, "run.ckpt")
    nested = dict(module.datamodule_config, _target_="datamodules.VOCSegmentationDataModule",
                  train_transforms=[{"_target_": "subprocess.call", "args": ["true"]}])
    module.datamodule_config = nested
    with pytest.raises(ValueError, match=r"_target_=subprocess.call"):
        evaluation_datamodule(module, None, "run.ckpt")
