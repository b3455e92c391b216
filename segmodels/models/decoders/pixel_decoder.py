"""Mask2Former's pixel decoder (Cheng et al. CVPR 2022, Sec. 3.2 and 4.1; its ``MSDeformAttnPixelDecoder``).

The levels at strides 8, 16 and 32 are projected to ``channels`` (1x1 conv with bias + GroupNorm 32; a per-channel
bias is not removed by a norm over groups of channels; ``projection_bias=false`` is the layout of checkpoints
written before it, which load as they were), given a sine position
embedding plus a learned per-level embedding, and refined jointly by ``layers`` (6) deformable-attention encoder layers
(8 heads, 4 points, FFN 1024, post-norm, as Deformable DETR's encoder). The stride-4 level joins FPN-style (lateral 1x1
+ upsampled stride-8 output, 3x3 conv, GroupNorm, ReLU) and a 1x1 conv gives the mask features. Returns the mask
features and the three refined levels coarsest first, which the transformer decoder visits round-robin.

Levels come from ``levels.pyramid_levels``: the finest taken is the mask-feature level, the others go through the
encoder, so a backbone with strides 8..32 only (or a dilated one) still fits.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .deformable_attention import DeformableAttention, sine_positions
from .levels import pyramid_levels


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, relu: bool = False,
              bias: bool = False) -> nn.Sequential:
    """Conv + GroupNorm(32), optionally ReLU; Xavier-initialised as detectron2's ``c2_xavier_fill`` (bias 0)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if bias:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv, nn.GroupNorm(32, out_channels)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class EncoderLayer(nn.Module):
    def __init__(self, channels: int, levels: int, heads: int, points: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.attention = DeformableAttention(channels, levels, heads, points)
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.ffn = nn.Sequential(nn.Linear(channels, feedforward), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(feedforward, channels))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, references: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x + positions, references, x, shapes)))
        return self.norm2(x + self.dropout(self.ffn(x)))


def grid_references(shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(sum H_l W_l, 2): every position's centre as (x, y) in [0, 1] (no padding, so no valid ratios)."""
    centres = []
    for height, width in shapes:
        y, x = torch.meshgrid((torch.arange(height, device=device, dtype=dtype) + 0.5) / height,
                              (torch.arange(width, device=device, dtype=dtype) + 0.5) / width, indexing="ij")
        centres.append(torch.stack([x.flatten(), y.flatten()], -1))
    return torch.cat(centres)


class PixelDecoder(nn.Module):
    def __init__(self, channels: Sequence[int], strides: Sequence[int], width: int = 256, mask_channels: int = 256,
                 layers: int = 6, heads: int = 8, points: int = 4, feedforward: int = 1024,
                 dropout: float = 0.0, projection_bias: bool = True) -> None:
        super().__init__()
        self.levels = pyramid_levels(strides)  # the finest: mask features; the rest: the deformable encoder
        encoded = (self.levels[1:] or self.levels)[::-1]  # coarsest first, as Mask2Former orders them; one level: both
        self.encoded = encoded
        self.project = nn.ModuleList(conv_norm(channels[i], width, 1, bias=projection_bias) for i in encoded)
        for projection in self.project:  # the reference's input projections: Xavier-uniform
            nn.init.xavier_uniform_(projection[0].weight)
        self.level_embedding = nn.Parameter(torch.randn(len(encoded), width))  # N(0, 1), as the reference's
        self.encoder = nn.ModuleList(EncoderLayer(width, len(encoded), heads, points, feedforward, dropout)
                                     for _ in range(layers))
        self.lateral = conv_norm(channels[self.levels[0]], width, 1)
        self.output = conv_norm(width, width, 3, relu=True)
        self.mask_features = nn.Conv2d(width, mask_channels, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask features and the refined levels, in float32 with autocast off whatever the trainer's precision (the
        reference's ``@autocast(enabled=False)``: deformable attention's sampling is fragile in half precision)."""
        device = next(level for level in levels if level is not None).device.type
        # the meta device (FLOP counting) has no autocast to turn off
        off = torch.autocast(device_type=device, enabled=False) if device != "meta" else contextlib.nullcontext()
        with off:
            return self.encode([None if level is None else level.float() for level in levels])

    def encode(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = [project(levels[i]) for project, i in zip(self.project, self.encoded)]
        shapes = [tuple(m.shape[-2:]) for m in maps]
        tokens = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)
        positions = torch.cat([(sine_positions(*shape, m.shape[1], m.device, m.dtype) + embedding[:, None, None])
                               .flatten(1).T for shape, m, embedding in zip(shapes, maps, self.level_embedding)])
        references = grid_references(shapes, tokens.device, tokens.dtype)[None].expand(tokens.shape[0], -1, -1)
        for layer in self.encoder:
            tokens = layer(tokens, positions[None], references, shapes)
        refined, start = [], 0
        for height, width in shapes:
            refined.append(tokens[:, start:start + height * width].transpose(1, 2)
                           .reshape(tokens.shape[0], -1, height, width))
            start += height * width
        fine = self.lateral(levels[self.levels[0]])
        fine = self.output(fine + F.interpolate(refined[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(fine), refined
