"""Plain vision transformers from timm (ViT, DINOv2 with and without registers, DINOv3, SAM, EVA-02,
SigLIP) as feature pyramids, so every decoder fits them.

A plain ViT keeps one resolution (the patch grid) throughout. Following ViTDet's simple feature pyramid
(Li et al. 2022, "Exploring Plain Vision Transformer Backbones for Object Detection") and
mmsegmentation's ``MultiLevelNeck`` for ViT + UPerNet, the outputs of ``blocks`` evenly spaced blocks
(timm's ``forward_intermediates``, prefix and register tokens dropped) become four levels: two
transposed convs (4x), one (2x), identity, and a 2x max-pool, each then projected to ``adapter_channels``
by a 1x1 and a 3x3 conv. The levels are declared at strides 4, 8, 16 and 32 of the padded input for
any patch size (for patch 14 they are really 3.5..28: decoders resize to the actual sizes, and the
model crops the logits back). Deliberate differences from ViTDet: BatchNorm instead of LayerNorm in
the adapter, and the four levels come from four blocks (mmsegmentation's form), not all from the last.

The adapter is new weights (``fresh``): it trains with the decoder while the pretrained ViT is frozen,
gets the decoder's learning rate, and is never part of ``frozen_stages``. Inputs are padded to a
multiple of the patch size (``pad_multiple``) and the position embeddings resized to the grid (timm's
dynamic image size; SAM's windowed attention handles any grid itself).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import group_parameters
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, BackboneInfo, adapt_first_conv_weight, check_output_stride
from .weights import PretrainedWeightsUnavailable, load_exactly, unreadable_weights

PLAIN_VIT_PREFIXES = ("vit_", "samvit_", "eva02_")
PLAIN_VIT_MARKERS = ("_dinov2", "_dinov3", "_siglip")
STRIDES = (4, 8, 16, 32)


def is_plain_vit(model_name: str) -> bool:
    return model_name.startswith(PLAIN_VIT_PREFIXES) or any(m in model_name for m in PLAIN_VIT_MARKERS)


def scale_branch(width: int, scale: float) -> tuple[nn.Module, int]:
    """ViTDet's resampling of the patch grid by ``scale``, and the width it leaves."""
    if scale == 4:
        return nn.Sequential(nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.BatchNorm2d(width // 2), nn.GELU(),
                             nn.ConvTranspose2d(width // 2, width // 4, 2, stride=2)), width // 4
    if scale == 2:
        return nn.ConvTranspose2d(width, width // 2, 2, stride=2), width // 2
    if scale == 1:
        return nn.Identity(), width
    return nn.MaxPool2d(2, ceil_mode=True), width


class SimplePyramid(nn.Module):
    """Four patch-grid maps -> levels at 4x, 2x, 1x and 0.5x the grid, each ``channels`` wide."""

    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.resample, self.project = nn.ModuleList(), nn.ModuleList()
        for scale in (4, 2, 1, 0.5):
            branch, out = scale_branch(width, scale)
            self.resample.append(branch)
            self.project.append(nn.Sequential(
                nn.Conv2d(out, channels, 1, bias=False), nn.BatchNorm2d(channels),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            ))

        self.used = [0, 1, 2, 3]

    def keep(self, used: list[int]) -> None:
        """Drop the branches of levels no decoder reads (their weights would never learn)."""
        self.used = sorted(used)
        for index in set(range(4)) - set(used):
            self.resample[index], self.project[index] = nn.Identity(), nn.Identity()

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor | None]:
        return [self.project[i](self.resample[i](m)) if i in self.used else None for i, m in enumerate(maps)]


def evenly_spaced_blocks(depth: int, count: int) -> list[int]:
    """``count`` block indices ending at the last block, evenly spaced (12 blocks, 4: 2, 5, 8, 11); a
    shallower network repeats blocks (2 blocks: 0, 0, 0, 1)."""
    return [max(0, (i + 1) * depth // count - 1) for i in range(count)]


def read_state_dict(path: str | Path, model_name: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone '{model_name}': weights file {path} does not exist; give backbone.weights "
                                f"the path of a .safetensors or .pth state dict in timm's key layout")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, a header that is not safetensors, pickle garbage
        raise ValueError(unreadable_weights(path, model_name, error)) from error
    return state.get("state_dict", state) if isinstance(state, dict) else state


ADAPTERS = ("simple_pyramid", "none")


class ViTBackbone(Backbone):
    """``adapter="none"`` gives the four block outputs through the ViT's final LayerNorm (all at the patch stride,
    ``embed_dim`` wide): the input of the DINOv2 paper's linear probe (its ``get_intermediate_layers(norm=True)``),
    for decoders that fit any pyramid (``linear``, ``segformer``). The adapter reads the blocks un-normalised, as
    ViTDet's simple feature pyramid does. ``normalize`` overrides whether the final LayerNorm applies (DPT reads the
    blocks as they are); ``readout`` puts the class token beside every patch token (twice as wide: DPT's readout);
    ``model_kwargs`` go to ``timm.create_model`` and ``norm_eps`` sets every LayerNorm's epsilon (an imported ViT's
    exact shape)."""

    def __init__(self, model_name: str = "vit_small_patch14_dinov2", pretrained: bool = True, in_channels: int = 3,
                 weights: str | None = None, blocks: int | list[int] = 4, adapter: str = "simple_pyramid",
                 adapter_channels: int = 256, depth: int | None = None, output_stride: int = 32,
                 model_kwargs: dict | None = None, readout: bool = False, normalize: bool | None = None,
                 norm_eps: float | None = None) -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"backbone.adapter={adapter!r}: choose one of {', '.join(ADAPTERS)}")
        check_output_stride(model_name, output_stride, (32,))  # the pyramid is the adapter's, not dilation's
        options = {"num_classes": 0, "in_chans": in_channels, **({"depth": depth} if depth else {}),
                   **(model_kwargs or {})}  # more timm.create_model arguments: an imported ViT's exact shape
        try:
            self.vit = self._create(model_name, pretrained and not weights, options)
        except (OSError, RuntimeError) as error:
            raise PretrainedWeightsUnavailable(
                f"backbone '{model_name}' asked for pretrained weights, which are not in the Hugging Face cache "
                f"(HF_HOME) and could not be downloaded ({error}). Either copy the cache from a machine with "
                f"internet, give a local file with backbone.weights=/path/to/file.safetensors, or train from random "
                f"weights with backbone.pretrained=false."
            ) from error
        if weights:
            state = read_state_dict(weights, model_name)
            # the patch embedding is the first conv: adapted to in_channels as every stem here (timm's rule, which
            # timm itself applies to hub weights)
            first = self.vit.pretrained_cfg.get("first_conv", "patch_embed.proj") + ".weight"
            if first in state and state[first].shape[1] != in_channels:
                state[first] = adapt_first_conv_weight(state[first], in_channels)
            load_exactly(self.vit, state, source=str(weights), ignore=("head.",))
        count = len(self.vit.blocks)
        self.blocks = list(blocks) if isinstance(blocks, (list, tuple)) else evenly_spaced_blocks(count, blocks)
        if len(self.blocks) != 4 or not all(0 <= b < count for b in self.blocks):
            raise ValueError(f"backbone.blocks={blocks}: give 4 block indices in 0..{count - 1} (or a count, 4)")
        if norm_eps is not None:  # a checkpoint trained with another epsilon (transformers' DPT: 1e-12)
            for module in self.vit.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eps = norm_eps
        if readout and adapter != "none":
            raise ValueError("backbone.readout=true gives the ViT's own tokens with its class token: set "
                             "backbone.adapter=none")
        self.readout = readout
        # drop what no level uses (blocks after the last taken, the head; the final norm unless it normalises the
        # probe's tokens): every weight trains
        self.normalized = adapter == "none" if normalize is None else normalize
        self.split: int | None = None  # see split_at
        self.vit.prune_intermediate_layers(sorted(set(self.blocks)), prune_norm=not self.normalized, prune_head=True)
        self.pad_multiple = self.vit.patch_embed.patch_size[0]
        if adapter == "none":
            self.adapter, self.fresh = None, ()
            width = self.vit.embed_dim * (2 if readout else 1)  # readout: [patch token, class token] per position
            self.channels, self.strides = [width] * 4, [self.pad_multiple] * 4
        else:
            self.adapter, self.fresh = SimplePyramid(self.vit.embed_dim, adapter_channels), ("adapter",)
            self.channels, self.strides = [adapter_channels] * 4, list(STRIDES)
        config = self.vit.pretrained_cfg
        self.mean, self.std = tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD))

    @staticmethod
    def _create(model_name: str, pretrained: bool, options: dict) -> nn.Module:
        try:
            return timm.create_model(model_name, pretrained=pretrained, dynamic_img_size=True, **options)
        except TypeError:  # SAM's ViT takes any grid without the flag
            return timm.create_model(model_name, pretrained=pretrained, **options)

    def keep_levels(self, used: list[int]) -> None:
        if self.adapter is not None:
            self.adapter.keep(used)

    def layers(self) -> list[list[nn.Parameter]]:
        """By block, as BEiT and timm's layer decay group a ViT: the patch and position embeddings first, then
        one group per block (timm's ``group_matcher``); the adapter is new weights and is in none."""
        parameters = dict(self.vit.named_parameters())
        groups = group_parameters(self.vit, self.vit.group_matcher(coarse=False))
        return [[parameters[name] for name in names] for _, names in sorted(groups.items())]

    def split_at(self, block: int) -> None:
        """Stop after ``block`` blocks and give the tokens as two levels, the patch grid (N, D, h, w) and the prefix
        tokens (N, D, P, 1): for a head that runs the remaining blocks itself (EoMT). The blocks stay the backbone's,
        so freezing, layer-wise decay and LoRA treat them as before."""
        if not isinstance(self.vit, VisionTransformer):
            raise ValueError(f"{type(self.vit).__name__} ViTs (rotary or windowed attention) cannot take queries inside "
                             f"their blocks here; use a plain timm VisionTransformer (ViT, DINOv2, SigLIP)")
        if self.adapter is not None:
            raise ValueError("the head reads the ViT's own tokens, not a pyramid: set backbone.adapter=none")
        self.split = block
        self.channels, self.strides = [self.vit.embed_dim] * 2, [self.pad_multiple] * 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.split is not None:
            return self._split_forward(x)
        taken = sorted(set(self.blocks))  # timm returns one map per block, however often it is named
        # adapter=none: the final LayerNorm on every block taken, as DINOv2's get_intermediate_layers(norm=True)
        readout = {"return_prefix_tokens": True} if self.readout else {}  # SAM's ViT has no such option (nor tokens)
        maps = self.vit.forward_intermediates(x, indices=taken, norm=self.normalized, output_fmt="NCHW",
                                              intermediates_only=True, **readout)
        if self.readout:  # DPT's readout: the class token beside every patch token
            maps = [torch.cat([grid, prefix[:, 0, :, None, None].expand_as(grid)], dim=1) for grid, prefix in maps]
        maps = [maps[taken.index(b)] for b in self.blocks]
        return maps if self.adapter is None else self.adapter(maps)


    def _split_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2] // self.pad_multiple, x.shape[-1] // self.pad_multiple
        vit = self.vit
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        for block in vit.blocks[:self.split]:
            tokens = run_block(vit, block, tokens)
        prefix = vit.num_prefix_tokens
        grid = tokens[:, prefix:].transpose(1, 2).reshape(len(tokens), -1, height, width)
        return [grid, tokens[:, :prefix].transpose(1, 2)[..., None]]


def run_block(vit: nn.Module, block: nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One block, recomputed in the backward pass when the ViT checkpoints gradients (backbone.grad_checkpointing)."""
    if getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(block, tokens, attn_mask=mask, use_reentrant=False)
    return block(tokens, attn_mask=mask)


def vit_info(model_name: str, adapter_channels: int = 256) -> BackboneInfo:
    config = timm.get_pretrained_cfg(model_name)
    config = config.to_dict() if config is not None else {}
    return BackboneInfo((adapter_channels,) * 4, STRIDES, tuple(config.get("mean", IMAGENET_MEAN)),
                        tuple(config.get("std", IMAGENET_STD)),
                        f"timm {config.get('hf_hub_id') or model_name} (+ a new SimplePyramid adapter)")


def resolve_vit(model_name: str):
    return partial(ViTBackbone, model_name) if timm.is_model(model_name) and is_plain_vit(model_name) else None
