"""Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks") over pixels.

Each labelled pixel's confidence (its top class probability) falls into one of ``bins`` equal-width bins of
(0, 1]; ECE = sum over bins of ``|accuracy - mean confidence|`` x the bin's share of pixels. The sums are kept per
bin, so batches, images and processes add up exactly.
"""
from __future__ import annotations

import torch


def calibration_counts(probabilities: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                       bins: int = 15) -> torch.Tensor:
    """(3, bins): pixel count, summed confidence and summed correctness per bin, over labelled pixels."""
    confidence, predictions = probabilities.max(dim=1)
    valid = targets != ignore_index
    confidence, correct = confidence[valid].double(), (predictions[valid] == targets[valid]).double()
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1  # (k/bins, (k+1)/bins] -> k
    counts = torch.zeros(3, bins, dtype=torch.float64, device=probabilities.device)
    counts[0].index_add_(0, index, torch.ones_like(confidence))
    counts[1].index_add_(0, index, confidence)
    counts[2].index_add_(0, index, correct)
    return counts


def expected_calibration_error(counts: torch.Tensor) -> torch.Tensor:
    return (counts[2] - counts[1]).abs().sum() / counts[0].sum().clamp(min=1)
