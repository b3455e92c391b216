"""The set loss of mask classification (Mask2Former, Cheng et al. CVPR 2022, Sec. 3.3 and 4.1; EoMT trains with the
same): each ground-truth segment is matched to one query by the Hungarian algorithm on class + mask costs, matched
queries learn their segment's class and mask, the others learn "no object".

As the paper: segments are one per class present in the label map (semantic segmentation); costs and losses are
weighted class 2 / mask 5 / dice 5; the class loss is cross-entropy over ``num_classes + 1`` with the no-object
class weighted 0.1; mask costs use ``num_points`` (12,544) points drawn uniformly, shared by every query and segment of
an image; mask losses use as many points per matched mask, chosen by importance sampling (PointRend: ``oversample`` x
3 random candidates, the ``importance`` 0.75 share taken where the prediction is least certain, the rest uniform);
mask losses are sigmoid cross-entropy and dice, summed over masks and divided by the number of segments in the batch;
every prediction set given (deep supervision) is matched and scored on its own and the losses added.

Deliberate difference: pixels labelled ``ignore_index`` never count. Mask2Former's semantic mapper leaves them out of
every segment, so they train every mask towards 0; here a point that lands on one is dropped from the mask cost and
the mask losses (cross-entropy averaged over the valid points; dice over them). Labels are read at the points by
nearest-neighbour lookup (a label map is not interpolated), predictions bilinearly. Under DDP the losses are divided
by this process's segment count (Mask2Former averages the count over processes first).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..inference import log_of_scores


@dataclass
class MaskPredictions:
    """One set of predictions: (N, Q, C + 1) class logits (the last is "no object") and (N, Q, h, w) mask logits."""

    classes: torch.Tensor
    masks: torch.Tensor


def semantic_scores(prediction: MaskPredictions) -> torch.Tensor:
    """(N, C, h, w): each class's probability (no-object left out) times each query's mask probability, summed over
    queries (Mask2Former's semantic inference)."""
    classes = prediction.classes.float().softmax(dim=-1)[..., :-1]
    return torch.einsum("nqc,nqhw->nchw", classes, prediction.masks.float().sigmoid())


def log_semantic_scores(prediction: MaskPredictions) -> torch.Tensor:
    """The log of ``semantic_scores`` without a floor: each pixel's mask probabilities are divided by their largest
    before the sum and that factor added back as a log, so where every mask is nearly off the classes keep the
    reference's ranking (a floor such as 1e-8 made them tie there, and the first class won)."""
    classes = prediction.classes.float().softmax(dim=-1)[..., :-1]
    log_masks = F.logsigmoid(prediction.masks.float())
    top = log_masks.amax(dim=1, keepdim=True)
    scores = torch.einsum("nqc,nqhw->nchw", classes, (log_masks - top).exp())
    return log_of_scores(scores) + top


def sample_at(maps: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """(M, P) values of (M, h, w) maps at (M, P, 2) points given as (x, y) in [0, 1] of the map's extent."""
    grid = 2 * points[:, :, None] - 1  # (M, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(maps[:, None].float(), grid, mode=mode, align_corners=False)[:, 0, :, 0]


def uncertain_points(logits: torch.Tensor, count: int, oversample: float, importance: float) -> torch.Tensor:
    """(M, count, 2) points per mask: ``importance`` of them the least certain (smallest absolute logit) among
    ``oversample`` x ``count`` random candidates, the rest uniform (PointRend's importance sampling)."""
    masks = len(logits)
    candidates = torch.rand(masks, int(count * oversample), 2, device=logits.device)
    uncertainty = -sample_at(logits, candidates).abs()
    certain = int(importance * count)
    chosen = uncertainty.topk(certain, dim=1).indices
    points = torch.gather(candidates, 1, chosen[..., None].expand(-1, -1, 2))
    return torch.cat([points, torch.rand(masks, count - certain, 2, device=logits.device)], dim=1)


def segments_of(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The classes present in one label map, in increasing order: one segment each."""
    present = labels.unique()
    return present[present != ignore_index]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(M,) 1 - dice of sigmoid masks against binary targets over the valid points, +1 smoothed (the paper's)."""
    probabilities = logits.sigmoid() * valid
    targets = targets * valid
    return 1 - (2 * (probabilities * targets).sum(-1) + 1) / (probabilities.sum(-1) + targets.sum(-1) + 1)


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(M,) binary cross-entropy averaged over the valid points of each mask."""
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * valid
    return losses.sum(-1) / valid.sum(-1).clamp(min=1)


def pairwise_costs(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, T) cross-entropy and dice costs of Q mask logits (Q, P) against T binary targets (T, P) at P shared points,
    ``valid`` (P,) marking the points that count."""
    valid = valid.float()
    count = valid.sum().clamp(min=1)
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none") * valid
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none") * valid
    ce = (positive @ targets.T + negative @ (1 - targets).T) / count
    probabilities = logits.sigmoid() * valid
    dice = 1 - (2 * probabilities @ targets.T + 1) / (probabilities.sum(-1)[:, None] + targets.sum(-1)[None] + 1)
    return ce, dice


class MaskClassificationLoss(nn.Module):
    """Hungarian matching + class / mask / dice losses over one or more prediction sets (see the module docstring)."""

    def __init__(self, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 no_object_weight: float = 0.1, num_points: int = 12544, oversample: float = 3.0,
                 importance: float = 0.75) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.num_points, self.oversample, self.importance = num_points, oversample, importance
        weights = torch.ones(num_classes + 1)
        weights[-1] = no_object_weight
        self.register_buffer("class_weights", weights, persistent=False)

    @torch.no_grad()
    def costs(self, prediction: MaskPredictions, labels: torch.Tensor, segments: list[torch.Tensor],
              ignore_index: int) -> list[torch.Tensor]:
        """Per image, the (queries, segments) matching cost: 2 x -p(class) + 5 x mask cross-entropy + 5 x dice, the
        mask terms on ``num_points`` uniform points shared by all queries and segments of the image."""
        costs = []
        for image, classes in enumerate(segments):
            points = torch.rand(1, self.num_points, 2, device=labels.device)
            at_points = sample_at(labels[image:image + 1], points, mode="nearest")[0]  # (P,)
            targets = (at_points[None] == classes[:, None].float()).float()  # (T, P)
            logits = sample_at(prediction.masks[image], points.expand(len(prediction.masks[image]), -1, -1))
            ce, dice = pairwise_costs(logits.float(), targets, at_points != ignore_index)
            probabilities = prediction.classes[image].float().softmax(-1)[:, classes]  # (Q, T)
            costs.append(self.mask_weight * ce - self.class_weight * probabilities + self.dice_weight * dice)
        return costs

    def match(self, prediction: MaskPredictions, labels: torch.Tensor, segments: list[torch.Tensor],
              ignore_index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (query indices, segment indices) of the assignment of least total cost (scipy's Hungarian
        solver; one host copy of each cost matrix)."""
        matches = []
        for cost in self.costs(prediction, labels, segments, ignore_index):
            queries, chosen = linear_sum_assignment(cost.cpu().numpy())
            matches.append((torch.as_tensor(queries, dtype=torch.long, device=labels.device),
                            torch.as_tensor(chosen, dtype=torch.long, device=labels.device)))
        return matches

    def single(self, prediction: MaskPredictions, labels: torch.Tensor, segments: list[torch.Tensor],
               ignore_index: int, count: float) -> torch.Tensor:
        """The weighted loss of one prediction set."""
        matches = self.match(prediction, labels, segments, ignore_index)
        target_classes = torch.full(prediction.classes.shape[:2], self.num_classes, dtype=torch.long,
                                    device=labels.device)
        images = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)])
        queries = torch.cat([q for q, _ in matches])
        classes = torch.cat([segments[i][t] for i, (_, t) in enumerate(matches)])
        target_classes[images, queries] = classes
        class_loss = F.cross_entropy(prediction.classes.float().transpose(1, 2), target_classes, self.class_weights)
        masks = prediction.masks[images, queries].float()  # (M, h, w)
        if len(masks) == 0:  # no segment in the batch: only "no object" to learn; keep every mask weight in the graph
            return self.class_weight * class_loss + 0 * prediction.masks.sum()
        with torch.no_grad():
            points = uncertain_points(masks, self.num_points, self.oversample, self.importance)
            at_points = sample_at(labels[images], points, mode="nearest")  # (M, P)
            targets = (at_points == classes[:, None].float()).float()
            valid = (at_points != ignore_index).float()
        logits = sample_at(masks, points)
        mask_loss = sigmoid_ce_loss(logits, targets, valid).sum() / count
        dice = dice_loss(logits, targets, valid).sum() / count
        return self.class_weight * class_loss + self.mask_weight * mask_loss + self.dice_weight * dice

    def forward(self, predictions: list[MaskPredictions], labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        """Summed over the prediction sets (the final one and every deep-supervision one); ``labels`` (N, H, W) may
        be larger than the masks: points are in [0, 1] of each map's extent."""
        segments = [segments_of(image, ignore_index) for image in labels]
        count = max(1.0, float(sum(len(s) for s in segments)))  # Mask2Former's num_masks (one process's)
        return sum(self.single(p, labels, segments, ignore_index, count) for p in predictions)

