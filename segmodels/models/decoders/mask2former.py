"""Mask2Former (Cheng et al. CVPR 2022, "Masked-attention Mask Transformer for Universal Image Segmentation") as a
decoder on any backbone's pyramid: mask classification instead of per-pixel classification.

The pixel decoder (``pixel_decoder``: 6 deformable-attention layers on strides 8/16/32, mask features at stride 4)
feeds a transformer decoder of ``layers`` (9) layers, ``queries`` (100) learned queries with learned positional
embeddings, ``width`` (256) wide, 8 heads, FFN 2048, post-norm. Layer i cross-attends to the refined level
i mod 3 (strides 32, 16, 8: round-robin) with masked attention: a query sees only the pixels where its mask,
predicted by the previous layer (or by the queries themselves before the first) and resized to that level, is above
0.5; a query whose mask is empty sees everything. Then self-attention, then the FFN. After the queries' start and
after every layer a shared head predicts (decoder LayerNorm) class logits over ``num_classes + 1`` and mask logits
as the dot product of a 3-layer MLP of the query with the mask features.

Training: the decoder owns its loss (``mask_loss``: Hungarian matching, class + mask + dice, deep supervision on all
10 prediction sets). Inference as the paper's: each query's mask logits are resized to the input first, then
combined into ``semantic_scores``, returned as their logarithm so that the softmax every evaluator applies gives them
back normalised per pixel. The pixel decoder runs in float32 with autocast off, as the reference's does (bf16
training leaves it alone). Initialisation as the reference's: level embeddings N(0, 1), input projections and the
transformer decoder's attention and FFN weights Xavier-uniform.

Deliberate difference: no padding masks (inputs are never padded inside a batch here). Checkpoints written before
the input projections had their bias (``projection_bias``) load without it, as they were trained.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .deformable_attention import sine_positions
from .mask_classifier import MaskClassifier
from .mask_loss import MaskPredictions
from .pixel_decoder import PixelDecoder
from .registry import ANY_PYRAMID, DECODERS


def xavier(module: nn.Module) -> None:
    """Xavier-uniform for every weight matrix, as the reference's decoder layers (``_reset_parameters``)."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)


class AttentionLayer(nn.Module):
    """Multi-head attention + residual + LayerNorm (post-norm); queries and keys carry their position embeddings."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        xavier(self)

    def forward(self, x: torch.Tensor, position: torch.Tensor, memory: torch.Tensor, memory_position: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        attended = self.attention(x + position, memory + memory_position, memory, attn_mask=mask, need_weights=False)[0]
        return self.norm(x + self.dropout(attended))


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.net(x)))


def mlp(width: int, out: int, layers: int = 3) -> nn.Sequential:
    """``layers`` linear layers with ReLU between (DETR's MLP)."""
    parts: list[nn.Module] = []
    for i in range(layers):
        parts.append(nn.Linear(width, out if i == layers - 1 else width))
        if i < layers - 1:
            parts.append(nn.ReLU(inplace=True))
    return nn.Sequential(*parts)


@DECODERS.register("mask2former", ANY_PYRAMID)
class Mask2FormerDecoder(MaskClassifier):
    legacy_layout = ("projection_bias", False, "decoder.pixel_decoder.project.0.0.bias", False)  # before 2026-12
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        queries: int = 100,
        width: int = 256,
        layers: int = 9,
        heads: int = 8,
        feedforward: int = 2048,
        dropout: float = 0.0,
        pixel_layers: int = 6,
        pixel_feedforward: int = 1024,
        points: int = 4,
        deep_supervision: bool = True,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample: float = 3.0,
        importance: float = 0.75,
        projection_bias: bool = True,
    ) -> None:
        super().__init__(num_classes, deep_supervision, class_weight=class_weight, mask_weight=mask_weight,
                         dice_weight=dice_weight, no_object_weight=no_object_weight, num_points=num_points,
                         oversample=oversample, importance=importance)
        self.pixel_decoder = PixelDecoder(channels, strides, width, width, pixel_layers, heads, points,
                                          pixel_feedforward, dropout, projection_bias)
        self.levels = self.pixel_decoder.levels
        self.scales = len(self.pixel_decoder.encoded)
        self.query_features = nn.Embedding(queries, width)
        self.query_positions = nn.Embedding(queries, width)
        self.level_embedding = nn.Embedding(self.scales, width)
        self.heads = heads
        self.cross = nn.ModuleList(AttentionLayer(width, heads, dropout) for _ in range(layers))
        self.self_attention = nn.ModuleList(AttentionLayer(width, heads, dropout) for _ in range(layers))
        self.ffn = nn.ModuleList(FeedForward(width, feedforward, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes + 1)
        self.mask_embedding = mlp(width, width)

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor, size: tuple[int, int] | None
                ) -> tuple[MaskPredictions, torch.Tensor | None]:
        """Class and mask logits of the queries, and the attention mask of the next layer at ``size`` (True: not
        attended, as ``nn.MultiheadAttention`` takes it), one per head."""
        x = self.norm(queries)
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embedding(x), mask_features)
        prediction = MaskPredictions(self.classifier(x), masks)
        if size is None:
            return prediction, None
        resized = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        blocked = (resized.sigmoid().flatten(2) < 0.5).detach()  # (N, Q, HW)
        blocked = blocked & ~blocked.all(-1, keepdim=True)  # an empty mask would leave nothing to see: see all
        return prediction, blocked.repeat_interleave(self.heads, dim=0)

    def sets(self, levels: list[torch.Tensor]) -> list[MaskPredictions]:
        """Every prediction set, the final one last (the first ``layers`` are deep supervision's)."""
        mask_features, refined = self.pixel_decoder(levels)
        memories, positions, sizes = [], [], []
        for scale, level in enumerate(refined):
            sizes.append(tuple(level.shape[-2:]))
            positions.append(sine_positions(*sizes[-1], level.shape[1], level.device, level.dtype).flatten(1).T[None])
            memories.append(level.flatten(2).transpose(1, 2) + self.level_embedding.weight[scale])
        batch = mask_features.shape[0]
        queries = self.query_features.weight[None].expand(batch, -1, -1)
        query_positions = self.query_positions.weight[None].expand(batch, -1, -1)
        prediction, blocked = self.predict(queries, mask_features, sizes[0])
        predictions = [prediction]
        for i, (cross, attention, ffn) in enumerate(zip(self.cross, self.self_attention, self.ffn)):
            scale = i % self.scales
            queries = cross(queries, query_positions, memories[scale], positions[scale], blocked)
            queries = attention(queries, query_positions, queries, query_positions)
            queries = ffn(queries)
            last = i == len(self.cross) - 1
            prediction, blocked = self.predict(queries, mask_features, None if last else sizes[(i + 1) % self.scales])
            predictions.append(prediction)
        return predictions
