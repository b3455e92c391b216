"""evaluate.py: the test protocols, the files it writes, agreement with train.py, and its errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from segmodels.cli.evaluate import evaluate
from segmodels.evaluation.report import image_scores
from tests.helpers import ROOT, subprocess_env


def test_one_image_scores_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2]])
    accuracy, miou = image_scores(prediction, target, 3, 255)
    # 7 labelled pixels, 6 right; class 0: 3 / 4, class 1: 3 / 4, class 2: absent from both
    assert accuracy == pytest.approx(6 / 7) and miou == pytest.approx(0.75)


def test_evaluate_at_one_scale_equals_train_py_test_scores_exactly(trained_run, tmp_path):
    run, trained = trained_run
    metrics = evaluate(trained["best_checkpoint"], tmp_path / "torch", split="test", engine="torch")
    for name in ("mIoU", "pixel_accuracy", "mean_accuracy", "mean_dice", "mean_boundary_iou", "ece"):
        assert metrics[name] == trained[f"test/{name}"], name
    assert metrics["iou"] == trained["test/iou"] and metrics["confusion"] == trained["test/confusion"]
    assert metrics["boundary_iou"] == trained["test/boundary_iou"]
    assert metrics["images"] == 4 and metrics["protocol"]["scales"] == [1.0] and metrics["engine"] == "torch"
    # the default engine (ONNX Runtime here): the same class maps, probabilities within 1e-4
    fast = evaluate(trained["best_checkpoint"], tmp_path / "auto", split="test")
    assert fast["engine"] == "onnxruntime" and fast["confusion"] == metrics["confusion"]
    assert fast["ece"] == pytest.approx(metrics["ece"], abs=1e-4)


def test_evaluate_py_multi_scale_flip_and_sliding_windows_write_every_file(trained_run, tmp_path):
    run, trained = trained_run
    out = tmp_path / "evaluation"
    result = subprocess.run(
        [sys.executable, "evaluate.py", f"ckpt_path={trained['best_checkpoint']}", "split=val",
         "scales=[0.75,1.0,1.5]", "flip=true", "tile=32", "worst=3", f"hydra.run.dir={out}"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"files            {out}/" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["protocol"]["scales"] == [0.75, 1.0, 1.5]
    assert metrics["protocol"]["flip"] is True and metrics["protocol"]["tile"] == 32
    assert set(metrics["boundary_iou"]) == set(metrics["iou"])
    bins = metrics["calibration_bins"]  # ECE by hand: sum over bins of |correct - confidence| over all pixels
    gaps = sum(abs(c - s) for c, s in zip(bins["correct_sum"], bins["confidence_sum"]))
    assert metrics["ece"] == pytest.approx(gaps / sum(bins["pixels"]), abs=1e-6)
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [r["id"] for r in rows] == [f"val_{i:04d}" for i in range(4)] and rows[0]["height"] == "48"
    for name in ("worst.png", "reliability.png", "confusion_matrix.csv", "confusion_matrix.png", "iou.png"):
        assert (out / name).stat().st_size > 0, name


def test_bad_input_is_named_with_the_fix(trained_run, tmp_path):
    run, trained = trained_run
    best = trained["best_checkpoint"]
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=.*missing.ckpt: no such checkpoint file"):
        evaluate(str(tmp_path / "missing.ckpt"), tmp_path)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(open(best, "rb").read()[:5000])  # a copy cut short, as a full disk leaves it
    with pytest.raises(ValueError, match=r"broken.ckpt: the file cannot be read as a checkpoint .* truncated"):
        evaluate(str(broken), tmp_path)
    with pytest.raises(ValueError, match=r"split=holdout: choose one of train, val, test"):
        evaluate(best, tmp_path, split="holdout")
    with pytest.raises(ValueError, match=r"scales=\[0.0, -1\]: give one or more positive numbers"):
        evaluate(best, tmp_path, scales=[0.0, -1])
    with pytest.raises(ValueError, match=r"scales=\['big'\]: give one or more positive numbers"):
        evaluate(best, tmp_path, scales=["big"])


def test_the_confusion_matrix_prints_each_cells_share_and_on_request_its_count(tmp_path):
    from segmodels.evaluation.plots import plot_confusion

    confusion = [[90, 10], [5, 15]]  # rows: target; shares 90/100, 10/100, 5/20, 15/20
    figure = plot_confusion(tmp_path / "c.png", confusion, ["background", "thing"])
    assert [t.get_text() for t in figure.axes[0].texts] == ["90.0", "10.0", "25.0", "75.0"]
    figure = plot_confusion(tmp_path / "c.png", confusion, ["background", "thing"], counts=True)
    assert [t.get_text() for t in figure.axes[0].texts] == ["90.0\n90", "10.0\n10", "25.0\n5", "75.0\n15"]
    assert figure.axes[0].get_title() == "confusion matrix\n(% of each target class's pixels)"
    many = np.eye(150, dtype=int) * 10  # ADE20K's count: colour only, and a figure that stops growing
    figure = plot_confusion(tmp_path / "c.png", many.tolist(), [f"c{i}" for i in range(150)])
    assert not figure.axes[0].texts and max(figure.get_size_inches()) <= 30


def test_per_image_confusions_in_one_bincount_equal_one_per_image():
    from segmodels.evaluation.metrics import confusion_of, confusion_per_image

    generator = torch.Generator().manual_seed(0)
    predictions = torch.randint(0, 3, (4, 5, 6), generator=generator)
    targets = torch.randint(0, 3, (4, 5, 6), generator=generator)
    targets[1, :2] = 255
    batched = confusion_per_image(predictions, targets, 3, 255)
    assert batched.shape == (4, 3, 3)
    for i in range(4):
        assert torch.equal(batched[i], confusion_of(predictions[i], targets[i], 3, 255))


def test_scores_without_boundary_iou_count_the_same_confusion():
    from segmodels.evaluation.metrics import SegmentationScores

    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(2, 3, 20, 24, generator=generator).softmax(1)
    targets = torch.randint(0, 3, (2, 20, 24), generator=generator)
    full, light = SegmentationScores(3), SegmentationScores(3, boundary=False)
    full.update(probabilities, targets)
    light.update(probabilities, targets)
    assert torch.equal(full.compute()["confusion"], light.compute()["confusion"])
    assert full.compute()["mIoU"] == light.compute()["mIoU"] and full.compute()["ece"] == light.compute()["ece"]
    assert not torch.isnan(full.compute()["mean_boundary_iou"]) and torch.isnan(light.compute()["mean_boundary_iou"])
