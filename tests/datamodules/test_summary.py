"""`python -m datamodules.summary`: the numbers a researcher checks before training."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from datamodules import make_demo_dataset
from datamodules.summary import main, median_frequency_weights


def test_summary_reports_splits_frequencies_and_weights(tmp_path, capsys):
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 6, "val": 2}, size=40)
    assert main([str(root), "--splits", "train", "val", "--class-weights", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["splits"]["train"]["images"] == 6 and report["splits"]["val"]["sizes"]["min"] == [40, 40]
    assert set(report["class_frequency"]) == {"background", "circle", "square", "triangle"}
    assert sum(report["class_frequency"].values()) == pytest.approx(1.0)
    assert len(report["class_weights"]) == 4
    assert "class_weights=[" in capsys.readouterr().out


def test_summary_lists_problems_and_fails(tmp_path, capsys):
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 3, "val": 1}, size=32)
    Image.open(root / "SegmentationClass/train_0001.png").resize((16, 16)).save(root / "SegmentationClass/train_0001.png")
    assert main([str(root), "--splits", "train", "val", "test"]) == 1
    out = capsys.readouterr().out
    assert "test.txt does not exist" in out and "train_0001.jpg is 32x32 but its mask" in out


def test_median_frequency_weights():
    # class 0: 80 of 100 pixels in its images; class 1: 10 of 50; class 2 absent
    weights = median_frequency_weights(np.array([80, 10, 0]), np.array([100, 50, 0]))
    assert weights == pytest.approx([0.5 / 0.8, 0.5 / 0.2, 0.0])


def test_a_missing_test_split_nobody_asked_for_is_a_note_not_a_problem(tmp_path, capsys):
    # PASCAL VOC 2012 ships train/val/trainval only
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 3, "val": 1}, size=32)
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "note: no test split" in out and "optimistic" in out and "problems: none found" in out
    assert "roles: train reads train, val reads val, test reads val" in out
