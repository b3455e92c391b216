"""What the mask-classification heads (Mask2Former, EoMT) share: their place in the decoder contract."""
from __future__ import annotations

import torch
from torch import nn

from .mask_loss import MaskClassificationLoss, MaskPredictions, semantic_scores


class MaskClassifier(nn.Module):
    """A head that predicts sets of (class, mask) pairs (``sets``, the final one last). In eval ``forward`` returns the
    log of the semantic scores, so the softmax every evaluator applies gives them back normalised per pixel; in
    training the head owns its loss (``loss``: the set loss on the final set and, with ``deep_supervision``, on
    every earlier one)."""

    def __init__(self, num_classes: int, deep_supervision: bool = True, **loss_options) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.criterion = MaskClassificationLoss(num_classes, **loss_options)

    def sets(self, levels: list[torch.Tensor]) -> list[MaskPredictions]:
        raise NotImplementedError

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """(N, num_classes, h, w) log semantic scores at the mask features' stride."""
        return semantic_scores(self.sets(levels)[-1]).clamp(min=1e-8).log()

    def loss(self, levels: list[torch.Tensor], labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        predictions = self.sets(levels)
        return self.criterion(predictions if self.deep_supervision else predictions[-1:], labels, ignore_index)
