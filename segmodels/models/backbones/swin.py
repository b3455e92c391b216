"""Swin Transformer (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows") at
any input size, windowed as the paper's segmentation code does.

timm builds the network and owns its weights (names, ImageNet checkpoints); this module owns the forward pass, because
timm's is a classifier's: it rolls the map before padding it to whole windows, and it fixes each stage's window and
shift at the size the model was built for (a 224 px Swin-T never shifts its last stage, and refuses other sizes). The
reference for segmentation (the Swin authors' mmsegmentation code, mmsegmentation's ``SwinTransformer``, transformers'
``SwinBackbone``) pads the image to whole patches and each map to whole windows, then rolls, so every block of an odd
index shifts at every size, with the attention mask computed for the padded map. Both agree wherever the map is a
multiple of the window and larger than it.
"""
from __future__ import annotations

from functools import partial

import torch
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch.nn import functional as F

from .timm_features import TimmBackbone


def is_swin(model_name: str) -> bool:
    """timm's Swin v1 models (``swin_*``; Swin v2 windows differently and stays timm's)."""
    return model_name.removeprefix("timm/").startswith("swin_")


def window_attention(block: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """(Shifted) window attention on a normalised (N, H, W, C) map: padded to whole windows, then rolled."""
    _, height, width, channels = x.shape
    window = block.window_size
    x = F.pad(x, (0, 0, 0, -width % window[1], 0, -height % window[0]))
    padded = x.shape[1:3]
    shift = block.shift_size
    mask = None
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        mask = block.get_attn_mask(x)  # regions of the rolled, padded map: the reference's mask
    windows = window_partition(x, window).view(-1, window[0] * window[1], channels)
    windows = block.attn(windows, mask=mask).view(-1, window[0], window[1], channels)
    x = window_reverse(windows, window, *padded)
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(1, 2))
    return x[:, :height, :width]


def swin_block(block: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """One Swin block (pre-norm attention, then pre-norm MLP) on an (N, H, W, C) map."""
    x = x + block.drop_path1(window_attention(block, block.norm1(x)))
    return x + block.drop_path2(block.mlp(block.norm2(x)))


class SwinBackbone(TimmBackbone):
    """timm's Swin (any ``swin_*`` name; ``model_kwargs`` give another shape) with the reference's windows. The output
    LayerNorms (``out_norm``) have mmsegmentation's and transformers' epsilon, 1e-5."""

    norm_eps = 1e-5

    def __init__(self, model_name: str = "swin_tiny_patch4_window7_224", pretrained: bool = True,
                 in_channels: int = 3, weights: str | None = None, out_indices: list[int] | None = None,
                 output_stride: int = 32, out_norm: bool = False, model_kwargs: dict | None = None) -> None:
        # full windows in every stage at any size (always_partition), no size check: the forward below pads
        options = {**(model_kwargs or {}), "always_partition": True, "strict_img_size": False}
        super().__init__(model_name, pretrained, in_channels, weights, out_indices, output_stride, out_norm, options)
        self.patch = tuple(self.net.patch_embed.patch_size)
        self.taken = set(self.net.return_layers)  # the stages whose outputs are levels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        x = self.net.patch_embed(F.pad(x, (0, -width % self.patch[1], 0, -height % self.patch[0])))
        levels = []
        for name, stage in self.net.named_children():
            if name == "patch_embed":
                continue
            x = stage.downsample(x)
            for block in stage.blocks:
                x = self.run(partial(swin_block, block), x)
            if name in self.taken:
                levels.append(x.permute(0, 3, 1, 2))
        return [norm(level) for norm, level in zip(self.norms, levels)] if self.norms is not None else levels

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Each block is recomputed in the backward pass (this forward runs the blocks itself)."""
        self.grad_checkpointing = enable

