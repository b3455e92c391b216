"""Test-time inference (evaluate.py's scales, flip and sliding windows) against the averages computed by hand."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmodels.models.inference import predict_probabilities


def position_dependent_model() -> nn.Module:
    """A 3x3 convolution with an asymmetric kernel and zero padding: its output changes under a flip and at a
    window's border, so averaging the wrong copies or windows shows."""
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        model.weight.mul_(3.0)
        model.weight[:, :, :, 0] += 1.0  # left and right differ
    return model.eval()


def probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).softmax(dim=1)


def test_scales_and_flip_average_the_softmaxes_of_the_resized_and_mirrored_logits():
    model, x = position_dependent_model(), torch.randn(1, 2, 8, 10)
    with torch.no_grad():
        plain = probabilities(model, x)
        mirrored = probabilities(model, x.flip(-1)).flip(-1)
        half = F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False)

        def upsampled(logits: torch.Tensor) -> torch.Tensor:  # mmsegmentation: logits to the image's size, then softmax
            return F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=False).softmax(dim=1)

        small = (upsampled(model(half)) + upsampled(model(half.flip(-1)).flip(-1))) / 2
    assert torch.allclose(predict_probabilities(model, x, flip=True), (plain + mirrored) / 2, atol=1e-6)
    expected = ((plain + mirrored) / 2 + small) / 2
    assert torch.allclose(predict_probabilities(model, x, flip=True, scales=[1.0, 0.5]), expected, atol=1e-6)
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the flip matters for this model


def test_sliding_windows_average_each_pixels_logits_over_the_windows_that_cover_it():
    model, x = position_dependent_model(), torch.randn(1, 2, 6, 6)
    # tile 4, overlap 0.5: stride 2, windows starting at rows and columns 0 and 2 (the last flush with the edge)
    total, counts = torch.zeros(1, 3, 6, 6), torch.zeros(1, 1, 6, 6)
    with torch.no_grad():
        for top in (0, 2):
            for left in (0, 2):
                total[..., top:top + 4, left:left + 4] += model(x[..., top:top + 4, left:left + 4])  # logits
                counts[..., top:top + 4, left:left + 4] += 1
        whole = probabilities(model, x)
    assert counts[0, 0, 2, 2] == 4 and counts[0, 0, 0, 0] == 1
    tiled = predict_probabilities(model, x, tile=4, overlap=0.5)
    assert torch.allclose(tiled, (total / counts).softmax(dim=1), atol=1e-6)  # mmsegmentation: logits averaged
    assert not torch.allclose(tiled, whole, atol=1e-3)  # the windows' borders matter for this model
