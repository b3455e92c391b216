"""Sliding windows: mmsegmentation's grid with non-square windows and strides, windows in batches, blend weights."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segmodels import build_model
from segmodels.models.inference import blend_weights, predict_probabilities, window_grid


class WindowPosition(nn.Module):
    """Two-class logits that depend on where a pixel sits inside its window: class 0's logit is the column's
    position in the window (0..1), class 1's is 0; so overlapping windows disagree and the blend decides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        ramp = (torch.arange(width, dtype=torch.float32) / max(1, width - 1)).expand(x.shape[0], 1, x.shape[-2], width)
        return torch.cat([ramp, torch.zeros_like(ramp)], dim=1)


def test_the_grid_is_mmsegmentations_slide_inference_with_non_square_windows():
    height, width, (crop_h, crop_w), (stride_h, stride_w) = 1000, 2048, (512, 1024), (341, 683)
    # mmsegmentation's slide_inference, by hand: grids = max(H - crop + stride - 1, 0) // stride + 1, the last clipped
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    expected = [(max(min(r * stride_h + crop_h, height) - crop_h, 0), max(min(c * stride_w + crop_w, width) - crop_w, 0))
                for r in range(rows) for c in range(cols)]
    assert window_grid(height, width, (crop_h, crop_w), (stride_h, stride_w)) == expected == [
        (0, 0), (0, 683), (0, 1024), (341, 0), (341, 683), (341, 1024), (488, 0), (488, 683), (488, 1024)]


def test_windows_in_batches_equal_windows_one_by_one():
    torch.manual_seed(0)
    model = build_model("resnet18", "unet", 3, pretrained=False).eval()
    images = torch.randn(2, 3, 70, 150)
    one = predict_probabilities(model, images, tile=[64, 96], stride=[40, 50], window_batch=1)
    batched = predict_probabilities(model, images, tile=[64, 96], stride=[40, 50], window_batch=5)
    assert one.shape == (2, 3, 70, 150) and torch.allclose(one, batched, atol=1e-6)


@pytest.mark.parametrize("blend", ["uniform", "gaussian", "cosine"])
def test_overlaps_average_with_the_blend_weights(blend):
    # width 12, windows 8 wide every 4: windows at 0 and 4; column 6 is the 7th of the first, the 3rd of the second
    images = torch.zeros(1, 1, 4, 12)
    probabilities = predict_probabilities(WindowPosition(), images, tile=[4, 8], stride=[4, 4], blend=blend)
    weights = blend_weights(4, 8, blend, torch.device("cpu"))[0, 0, 0]
    l_first, l_second = 6 / 7, 2 / 7  # class 0's logit in each window (class 1's is 0)
    w_first, w_second = float(weights[6]), float(weights[2])
    # mmsegmentation's slide_inference: the windows' logits averaged (here weighted), then the softmax
    logit = (w_first * l_first + w_second * l_second) / (w_first + w_second)
    expected = 1 / (1 + math.exp(-logit))
    assert float(probabilities[0, 0, 0, 6]) == pytest.approx(expected, abs=1e-6)
    assert float(probabilities[0, 0, 0, 0]) == pytest.approx(0.5, abs=1e-6)  # one window only: its own value
    if blend == "uniform":
        assert expected == pytest.approx(1 / (1 + math.exp(-(l_first + l_second) / 2)))
    else:  # the edges count less than the centre
        assert float(weights[0]) < float(weights[3]) and float(weights[7]) < float(weights[4])


def test_bad_window_settings_are_refused_by_name():
    model = WindowPosition()
    with pytest.raises(ValueError, match=r"tile=\[512, 0\]: give a positive whole number or \[height, width\]"):
        predict_probabilities(model, torch.zeros(1, 1, 600, 600), tile=[512, 0])
    with pytest.raises(ValueError, match=r"blend='smooth': choose one of uniform, gaussian, cosine"):
        predict_probabilities(model, torch.zeros(1, 1, 600, 600), tile=512, blend="smooth")
    with pytest.raises(ValueError, match=r"stride=\[600, 300\] is larger than the window tile=\[512, 512\]"):
        predict_probabilities(model, torch.zeros(1, 1, 1300, 1300), tile=512, stride=[600, 300])


class LogScores(nn.Module):
    """A mask-classification-like model: log class scores, class 0's score the column's place in the window."""

    log_scores = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = WindowPosition()(x).clamp(min=0.01)
        scores[:, 1] = 0.5
        return scores.log()


def test_a_model_of_log_scores_has_its_scores_averaged_over_windows_as_eomt_does():
    images = torch.zeros(1, 1, 4, 12)  # windows 8 wide at 0 and 4: column 6 is the 7th of one, the 3rd of the other
    probabilities = predict_probabilities(LogScores(), images, tile=[4, 8], stride=[4, 4])
    first, second = 6 / 7, 2 / 7  # class 0's score in each window; class 1's is 0.5 in both
    mean = (first + second) / 2
    assert float(probabilities[0, 0, 0, 6]) == pytest.approx(mean / (mean + 0.5), abs=1e-6)


class FaintLogScores(nn.Module):
    """Log class scores far below 1e-8 everywhere (every mask nearly off), class 1 the highest."""

    log_scores = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([-30.0, -25.0, -28.0]).view(1, 3, 1, 1).expand(x.shape[0], 3, *x.shape[-2:])


def test_faint_scores_averaged_over_windows_keep_their_ranking():
    probabilities = predict_probabilities(FaintLogScores(), torch.zeros(1, 1, 4, 12), tile=[4, 8], stride=[4, 4])
    expected = torch.tensor([-30.0, -25.0, -28.0]).softmax(0)
    assert torch.allclose(probabilities[0, :, 0, 6], expected, atol=1e-6)
    assert probabilities.argmax(1).unique().tolist() == [1]
