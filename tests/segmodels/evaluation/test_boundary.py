"""Boundary IoU against values counted by hand on a 6 x 6 image (d = 1 pixel)."""
from __future__ import annotations

import pytest
import torch

from segmodels.evaluation.boundary import boundary_counts, boundary_region, boundary_width
from segmodels.evaluation.metrics import SegmentationScores

RATIO = 0.1  # 0.1 x the 6 x 6 diagonal (8.49) rounds to d = 1


def squares() -> tuple[torch.Tensor, torch.Tensor]:
    """Truth: class 1 on rows 1-4, columns 1-4; prediction: the same square one column to the right."""
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, 1:5, 1:5] = 1
    prediction = torch.zeros(1, 6, 6, dtype=torch.long)
    prediction[0, 1:5, 2:6] = 1
    return prediction, target


def test_the_boundary_region_is_the_mask_within_d_of_its_contour_or_the_image_border():
    assert boundary_width(6, 6, RATIO) == 1 and boundary_width(512, 512, 0.02) == 14
    prediction, target = squares()
    truth = boundary_region((target == 1).unsqueeze(1), 1)[0, 0]
    assert truth.sum() == 12 and not truth[2:4, 2:4].any()  # the 4 x 4 square less its 2 x 2 core
    shifted = boundary_region((prediction == 1).unsqueeze(1), 1)[0, 0]
    assert shifted.sum() == 12 and shifted[1:5, 5].all()  # the column on the image border is boundary


def test_boundary_iou_by_hand_with_an_absent_class_and_ignored_pixels():
    prediction, target = squares()
    intersection, union = boundary_counts(prediction, target, 3, 255, RATIO)
    # class 1: rings of 12 and 12 pixels sharing rows 1 and 4 at columns 2-4 (6) -> 6 / 18
    # class 0: every background pixel is boundary (20 each), 16 shared -> 16 / 24; class 2: absent
    assert intersection.tolist() == [16, 6, 0] and union.tolist() == [24, 18, 0]
    target[0, 0, 0] = 255  # an ignored pixel counts for no class, in truth or prediction
    intersection, union = boundary_counts(prediction, target, 3, 255, RATIO)
    assert intersection.tolist() == [15, 6, 0] and union.tolist() == [23, 18, 0]

    scores = SegmentationScores(3, 255, boundary_ratio=RATIO)
    scores.update(torch.nn.functional.one_hot(prediction, 3).permute(0, 3, 1, 2).float(), target)
    result = scores.compute()
    assert result["boundary_iou"][:2].tolist() == pytest.approx([15 / 23, 6 / 18])
    assert torch.isnan(result["boundary_iou"][2])  # absent from both: no score, not in the mean
    assert result["mean_boundary_iou"].item() == pytest.approx((15 / 23 + 6 / 18) / 2)
    # the same split in two halves adds up to the same counts
    halves = SegmentationScores(3, 255, boundary_ratio=RATIO)
    both = torch.nn.functional.one_hot(prediction, 3).permute(0, 3, 1, 2).float()
    halves.update(both, target)
    halves.update(both, target)
    assert halves.compute()["boundary_iou"][:2].tolist() == pytest.approx([15 / 23, 6 / 18])
