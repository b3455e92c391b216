"""Expected calibration error against a value computed by hand."""
from __future__ import annotations

import pytest
import torch

from segmodels.evaluation.calibration import calibration_counts, expected_calibration_error
from segmodels.evaluation.metrics import SegmentationScores


def test_ece_by_hand_over_labelled_pixels_only():
    # five pixels of two classes: confidences 0.9 (right), 0.92 (wrong), 0.7 (right), 0.55 (wrong), one ignored
    first = torch.tensor([0.9, 0.92, 0.3, 0.55, 1.0])
    probabilities = torch.stack([first, 1 - first]).view(1, 2, 1, 5)
    targets = torch.tensor([[[0, 1, 1, 1, 255]]])
    counts = calibration_counts(probabilities, targets, 255, bins=15)
    # 0.9 and 0.92 share the bin (13/15, 14/15]: accuracy 1/2 against confidence 0.91 over 2 pixels;
    # 0.7 alone in (10/15, 11/15]; 0.55 alone in (8/15, 9/15]
    assert counts[0].nonzero().flatten().tolist() == [8, 10, 13] and counts[0].sum() == 4
    expected = (abs(1 - 1.82) + abs(1 - 0.7) + abs(0 - 0.55)) / 4
    assert expected_calibration_error(counts).item() == pytest.approx(expected)
    scores = SegmentationScores(2, 255)
    scores.update(probabilities, targets)
    assert scores.compute()["ece"].item() == pytest.approx(expected)


def test_a_perfectly_confident_right_model_has_no_calibration_error():
    targets = torch.randint(0, 3, (2, 8, 8))
    probabilities = torch.nn.functional.one_hot(targets, 3).permute(0, 3, 1, 2).float()
    assert expected_calibration_error(calibration_counts(probabilities, targets, 255)).item() == 0.0
