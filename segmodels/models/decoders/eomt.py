"""EoMT (Kerssies et al. CVPR 2025, "Your ViT is Secretly an Image Segmentation Model"): mask classification with
no decoder of its own. ``queries`` (100) learned tokens join the patch and prefix tokens before the last
``num_blocks`` (4) blocks of a plain ViT, which then process queries and patches together.

After the blocks and the ViT's final LayerNorm, a linear layer gives each query's class logits over
``num_classes + 1`` and a 3-layer MLP (GELU) its mask embedding, dotted with the patch tokens upscaled to stride 4
(per x2: transposed conv 2x2, GELU, depthwise 3x3 conv, LayerNorm2d; two steps for patch 14 or 16).

Masked attention with annealing: in training, before each of the last blocks the same heads predict masks from the
current tokens, and a query attends only to the patches its mask (resized to the patch grid) marks, as in
Mask2Former. Each block keeps its mask with a probability that falls from 1 to 0 on a polynomial schedule (power 0.9)
over its own stretch of training, block by block, so that the model ends up needing none and inference runs
unmasked. The paper's ADE20K schedule (about 39k steps) anneals block j of 4 from step 6,520 (j + 1) to 6,520 (j + 2):
stretches of 1/6 of training, which ``progress`` reproduces for any length. Every prediction made in training
(one per masked block and the final one) is scored by the set loss (``mask_loss``), as the paper.

Built on the backbone (``attach``): it must be a plain timm VisionTransformer with ``backbone.adapter=none``; its
last blocks stay the backbone's parameters (layer-wise decay, LoRA and freezing see them), the queries and heads
follow the decoder's learning rate. Inference returns log semantic scores, as ``mask2former``.
Deliberate differences: none in the architecture; the annealing schedule is given as fractions of the run.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from ..backbones.vit import run_block
from .mask_classifier import MaskClassifier
from .mask_loss import MaskPredictions
from .registry import DECODERS


def upscale_step(width: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(width, width, 2, stride=2), nn.GELU(),
                         nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False), LayerNorm2d(width))


def annealed(fraction: float, start: float, end: float, power: float = 0.9) -> float:
    """The probability of keeping a block's attention mask: 1 before ``start``, 0 after ``end``, polynomial between."""
    if fraction <= start:
        return 1.0
    if fraction >= end:
        return 0.0
    return (1 - (fraction - start) / (end - start)) ** power


@DECODERS.register("eomt", {"plain_vit_only": True})
class EoMTDecoder(MaskClassifier):
    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        queries: int = 100,
        num_blocks: int = 4,
        mask_annealing: bool = True,
        deep_supervision: bool = True,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample: float = 3.0,
        importance: float = 0.75,
    ) -> None:
        super().__init__(num_classes, deep_supervision, class_weight=class_weight, mask_weight=mask_weight,
                         dice_weight=dice_weight, no_object_weight=no_object_weight, num_points=num_points,
                         oversample=oversample, importance=importance)
        width, patch = channels[-1], strides[-1]
        self.levels = [0, 1]  # the split ViT's: patch grid, prefix tokens
        self.num_blocks, self.mask_annealing = num_blocks, mask_annealing
        self.queries = nn.Embedding(queries, width)
        self.classifier = nn.Linear(width, num_classes + 1)
        self.mask_embedding = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                            nn.Linear(width, width))
        self.upscale = nn.Sequential(*(upscale_step(width) for _ in range(max(1, round(math.log2(patch / 4))))))
        self.keep_probability = [1.0] * num_blocks
        self._host: list[nn.Module] = []  # the backbone, in a list so its weights are not registered twice

    def attach(self, backbone: nn.Module) -> None:
        """Take over the backbone's last ``num_blocks`` blocks (see the module docstring)."""
        vit = getattr(backbone, "vit", None)
        if vit is None or not hasattr(backbone, "split_at"):
            raise ValueError("EoMT puts its queries inside the blocks of a plain ViT (backbone=dinov2_small, "
                             "vit_small, ...); for this backbone use decoder=mask2former, the same mask classification "
                             "on any pyramid")
        if not 0 < self.num_blocks <= len(vit.blocks):
            raise ValueError(f"decoder.num_blocks={self.num_blocks}: the ViT has {len(vit.blocks)} blocks")
        if vit.embed_dim != self.queries.embedding_dim:
            raise ValueError("EoMT is sized from the ViT's own tokens: set backbone.adapter=none")
        backbone.split_at(len(vit.blocks) - self.num_blocks)
        self._host = [backbone]

    def progress(self, fraction: float) -> None:
        """Anneal the masks: block j of k keeps its mask with ``annealed(fraction, (j + 1) / (k + 2), (j + 2) / (k + 2))``."""
        k = self.num_blocks
        self.keep_probability = [annealed(fraction, (j + 1) / (k + 2), (j + 2) / (k + 2)) for j in range(k)]

    def predict(self, tokens: torch.Tensor, grid: tuple[int, int]) -> MaskPredictions:
        queries = tokens[:, :self.queries.num_embeddings]
        patches = tokens[:, -grid[0] * grid[1]:].transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embedding(queries), self.upscale(patches))
        return MaskPredictions(self.classifier(queries), masks)

    def attention_mask(self, masks: torch.Tensor, grid: tuple[int, int], tokens: int, keep: float) -> torch.Tensor:
        """(N, 1, T, T) additive mask: a query may not attend to a patch outside its mask (resized to the grid);
        each query's mask is dropped with probability 1 - ``keep``."""
        count = self.queries.num_embeddings
        resized = F.interpolate(masks.detach(), size=grid, mode="bilinear", align_corners=False).flatten(2) > 0
        dropped = torch.rand(resized.shape[:2], device=masks.device) >= keep
        allowed = resized | dropped[..., None]
        bias = torch.zeros(len(masks), 1, tokens, tokens, device=masks.device, dtype=masks.dtype)
        bias[:, 0, :count, tokens - grid[0] * grid[1]:] = torch.where(allowed, 0.0, float("-inf")).to(masks.dtype)
        return bias

    def sets(self, levels: list[torch.Tensor]) -> list[MaskPredictions]:
        """The prediction sets: in training one before each masked block and the final one; in eval the final one."""
        grid, prefix = levels[0], levels[1]
        shape = tuple(grid.shape[-2:])
        vit = self._host[0].vit
        tokens = torch.cat([self.queries.weight[None].expand(grid.shape[0], -1, -1), prefix.squeeze(-1).transpose(1, 2),
                            grid.flatten(2).transpose(1, 2)], dim=1)
        predictions = []
        for block, keep in zip(vit.blocks[len(vit.blocks) - self.num_blocks:], self.keep_probability):
            mask = None
            if self.training and self.mask_annealing:
                prediction = self.predict(vit.norm(tokens), shape)
                predictions.append(prediction)
                if keep > 0:
                    mask = self.attention_mask(prediction.masks, shape, tokens.shape[1], keep)
            tokens = run_block(vit, block, tokens, mask)
        return predictions + [self.predict(vit.norm(tokens), shape)]
