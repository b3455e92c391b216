"""What the mask-classification heads (Mask2Former, EoMT) share: their place in the decoder contract."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mask_loss import MaskClassificationLoss, MaskPredictions, log_semantic_scores


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

    takes_size = True  # the decoder contract: forward(levels, size) gets the (padded) input size
    log_scores = True  # its output is the log of class scores: windows average the scores themselves

    def forward(self, levels: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N, num_classes, H, W) log semantic scores: as Mask2Former's and EoMT's inference, each query's mask logits
        are resized to ``size`` (the input's) first and combined there; without ``size``, at the mask features'
        stride."""
        prediction = self.sets(levels)[-1]
        if size is not None:
            masks = F.interpolate(prediction.masks.float(), size=size, mode="bilinear", align_corners=False)
            prediction = MaskPredictions(prediction.classes, masks)
        return log_semantic_scores(prediction)

    def loss(self, levels: list[torch.Tensor], labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        predictions = self.sets(levels)
        return self.criterion(predictions if self.deep_supervision else predictions[-1:], labels, ignore_index)
