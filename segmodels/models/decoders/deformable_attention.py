"""Multi-scale deformable attention (Zhu et al. ICLR 2021, "Deformable DETR", Sec. 4.1), in plain PyTorch.

Each query looks at ``points`` locations per head and per level around its reference point, at offsets it predicts,
and sums the bilinearly sampled values with weights it predicts (softmax over all levels and points of a head).
Sampling is ``grid_sample``, which is what Mask2Former itself runs on CPU (its ``ms_deform_attn_core_pytorch``); no
compiled extension, so it runs on every device and exports to ONNX. Initialisation as the paper: offsets start on a
ring of directions, one per head, growing with the point index; attention weights start uniform.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_positions(height: int, width: int, channels: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(channels, height, width) DETR's normalised sine embedding (temperature 10,000, scale 2 pi): half the
    channels encode y, half x, interleaving sin and cos."""
    half = channels // 2
    y = (torch.arange(height, device=device, dtype=torch.float32) + 1) / (height + 1e-6) * 2 * math.pi
    x = (torch.arange(width, device=device, dtype=torch.float32) + 1) / (width + 1e-6) * 2 * math.pi
    frequencies = 10000 ** (2 * (torch.arange(half, device=device) // 2) / half)
    y, x = y[:, None] / frequencies, x[:, None] / frequencies  # (H, half), (W, half)
    y = torch.stack([y[:, 0::2].sin(), y[:, 1::2].cos()], dim=2).flatten(1)
    x = torch.stack([x[:, 0::2].sin(), x[:, 1::2].cos()], dim=2).flatten(1)
    grid = torch.cat([y[:, None, :].expand(-1, width, -1), x[None, :, :].expand(height, -1, -1)], dim=2)
    return grid.permute(2, 0, 1).to(dtype)


def deformable_sampling(values: list[torch.Tensor], locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, Lq, heads * d) weighted sums of ``values`` sampled at ``locations``.

    ``values``: per level (N * heads, d, H_l, W_l); ``locations``: (N, Lq, heads, levels, points, 2) as (x, y) in
    [0, 1]; ``weights``: (N, Lq, heads, levels, points). Each level's samples are weighted by one batched matmul and
    added up, rather than stacked first (20% less time here: no levels x points copy of the samples)."""
    batch, queries, heads, levels, points, _ = locations.shape
    grids = (2 * locations - 1).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)  # (N * heads, Lq, levels, points, 2)
    weights = weights.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (N * heads, Lq, levels, points)
    out = None
    for level, value in enumerate(values):
        grid = grids[:, :, level].contiguous()  # grid_sample runs twice as fast on a contiguous grid here
        sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        part = torch.matmul(sampled.transpose(1, 2), weights[:, :, level, :, None])  # (N * heads, Lq, d, 1)
        out = part if out is None else out + part
    return out[..., 0].view(batch, heads, queries, -1).permute(0, 2, 1, 3).reshape(batch, queries, -1)


class DeformableAttention(nn.Module):
    def __init__(self, channels: int = 256, levels: int = 3, heads: int = 8, points: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.levels, self.heads, self.points = levels, heads, points
        self.offsets = nn.Linear(channels, heads * levels * points * 2)
        self.attention = nn.Linear(channels, heads * levels * points)
        self.value = nn.Linear(channels, channels)
        self.output = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values
        ring = ring[:, None, None, :].repeat(1, self.levels, self.points, 1)
        ring *= torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.offsets.bias.copy_(ring.flatten())
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.attention.bias)
        for linear in (self.value, self.output):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: torch.Tensor, references: torch.Tensor, memory: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """``query`` (N, Lq, C), ``references`` (N, Lq, 2) as (x, y) in [0, 1], ``memory`` (N, sum H_l W_l, C)
        holding the levels of ``shapes`` one after another."""
        batch, queries, _ = query.shape
        value = self.value(memory).view(batch, memory.shape[1], self.heads, -1)
        values, start = [], 0
        for height, width in shapes:
            level = value[:, start:start + height * width]  # (N, HW, heads, d)
            values.append(level.permute(0, 2, 3, 1).reshape(batch * self.heads, -1, height, width))
            start += height * width
        offsets = self.offsets(query).view(batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention(query).view(batch, queries, self.heads, self.levels * self.points).softmax(-1)
        weights = weights.view(batch, queries, self.heads, self.levels, self.points)
        # offsets are in pixels of each level: divided by its width and height (sizes stay symbolic in an ONNX trace)
        scaled = [torch.stack([offsets[:, :, :, level, :, 0] / width, offsets[:, :, :, level, :, 1] / height], -1)
                  for level, (height, width) in enumerate(shapes)]
        locations = references[:, :, None, None, None, :] + torch.stack(scaled, dim=3)
        return self.output(deformable_sampling(values, locations, weights))
