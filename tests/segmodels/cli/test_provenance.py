"""What a run records about where its numbers came from, and evaluate.py noticing other data (issue 21)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from importlib.metadata import version

import lightning
import torch
from omegaconf import OmegaConf

from segmodels.cli.evaluate import evaluate
from tests.helpers import ROOT


def test_a_run_records_commit_command_versions_device_seed_and_data(trained_run, tiny_demo):
    run, metrics = trained_run
    record = metrics["provenance"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert record["git"]["commit"] == head and isinstance(record["git"]["dirty"], bool)
    assert record["versions"]["torch"] == version("torch") and record["versions"]["lightning"] == lightning.__version__
    assert record["seed"] == OmegaConf.load(run / "config.yaml").seed and record["device"].startswith("cpu")
    assert record["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and record["cpu"]["model"]
    assert metrics["test_split"] == "test" and metrics["test_is_selection_split"] is False and not metrics["test_note"]
    test_ids = (tiny_demo / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    assert record["data"]["test"]["images"] == len(test_ids) == 4
    assert record["data"]["test"]["ids_sha256"] == hashlib.sha256("\n".join(test_ids).encode()).hexdigest()
    files = [tiny_demo / "JPEGImages" / f"{i}.jpg" for i in test_ids] + [tiny_demo / "SegmentationClass" / f"{i}.png"
                                                                          for i in test_ids]
    assert record["data"]["test"]["bytes"] == sum(p.stat().st_size for p in files)
    assert json.loads((run / "metrics.json").read_text())["provenance"] == record
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["provenance"] == record
    assert json.loads((run / "model" / "config.json").read_text())["provenance"] == record
    assert f"segmodels commit `{head}`" in (run / "model" / "README.md").read_text()


def test_evaluate_warns_when_the_split_is_not_the_one_the_run_used(trained_run, tiny_demo, tmp_path, caplog):
    _, metrics = trained_run
    same = evaluate(metrics["best_checkpoint"], tmp_path / "same")
    assert same["data_differs_from_training"] == []
    other = tmp_path / "other"
    shutil.copytree(tiny_demo, other)
    split = other / "ImageSets" / "Segmentation" / "test.txt"
    split.write_text("\n".join(split.read_text().split()[:3]) + "\n")  # one test image fewer
    dataset = checkpoint_dataset(metrics["best_checkpoint"], root=str(other))
    with caplog.at_level("WARNING"):
        changed = evaluate(metrics["best_checkpoint"], tmp_path / "changed", dataset=dataset)
    assert any("images 4 then, 3 now" in line for line in changed["data_differs_from_training"])
    assert "the test split differs from the one the run was trained and tested with" in caplog.text


def checkpoint_dataset(path, **changes) -> dict:
    return {**torch.load(path, map_location="cpu", weights_only=True)["datamodule"], **changes}
