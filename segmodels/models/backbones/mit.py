"""Mix Transformer (MiT-B0..B5), SegFormer's encoder (Xie et al. 2021, "SegFormer: Simple and Efficient Design for
Semantic Segmentation with Transformers"), which timm lacks.

Four stages at strides 4/8/16/32, each: an overlapping patch embedding (a strided convolution, 7x7 stride 4 in the
first stage, 3x3 stride 2 after, then LayerNorm), transformer blocks with efficient self-attention (keys and values
from the tokens reduced ``sr`` times by a strided convolution and a LayerNorm) and a Mix-FFN (linear, 3x3 depthwise
convolution, GELU, linear: the convolution gives position, so there is no position embedding and any input size
works), and a final LayerNorm. Stochastic depth rises linearly to ``drop_path_rate`` (0.1, the paper's) over all blocks.

Weights: ``backbone.weights=<file>`` reads the ImageNet-1k weights in either published layout, NVlabs' ``mit_b2.pth``
(``patch_embed1``, ``block1``, ``attn.kv``) or Hugging Face's ``nvidia/mit-b2`` (``segformer.encoder.*``); they are
not on PyPI or the torch hub, so ``pretrained=true`` without a file stops with where to get them.

Deliberate difference: none in the network. LayerNorm's epsilon is an option (``norm_eps``): 1e-6 as the paper's
code; transformers' port runs PyTorch's default 1e-5, which ``io.transformers_import`` sets for parity.
"""
from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD

from .base import Backbone, BackboneInfo, adapt_first_conv_weight
from .registry import BACKBONES
from .weights import PretrainedWeightsUnavailable, load_exactly, load_local_state_dict

# widths, depths, heads and reduction ratios per stage (the paper's Table 6; mlp ratio 4 throughout)
ARCHS: dict[str, dict[str, tuple[int, ...]]] = {
    "mit_b0": {"widths": (32, 64, 160, 256), "depths": (2, 2, 2, 2)},
    "mit_b1": {"widths": (64, 128, 320, 512), "depths": (2, 2, 2, 2)},
    "mit_b2": {"widths": (64, 128, 320, 512), "depths": (3, 4, 6, 3)},
    "mit_b3": {"widths": (64, 128, 320, 512), "depths": (3, 4, 18, 3)},
    "mit_b4": {"widths": (64, 128, 320, 512), "depths": (3, 8, 27, 3)},
    "mit_b5": {"widths": (64, 128, 320, 512), "depths": (3, 6, 40, 3)},
}
HEADS, REDUCTIONS, MLP_RATIO = (1, 2, 5, 8), (8, 4, 2, 1), 4
WEIGHTS_HELP = ("MiT ImageNet weights are on the Hugging Face hub (nvidia/mit-b0 .. nvidia/mit-b5: model.safetensors) "
                "and in NVlabs/SegFormer's release (mit_b0.pth .. mit_b5.pth); download one on a connected machine and "
                "pass backbone.weights=<file>, or train from random weights with backbone.pretrained=false")


class PatchEmbedding(nn.Module):
    """Overlapping patches: a strided convolution, then LayerNorm over the channels."""

    def __init__(self, in_channels: int, width: int, kernel: int, stride: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H, W, C)


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from the tokens reduced ``reduction`` x ``reduction``."""

    def __init__(self, width: int, heads: int, reduction: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.reduction = reduction
        if reduction > 1:
            self.sr = nn.Conv2d(width, width, reduction, reduction)
            self.sr_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        batch, height, width, channels = x.shape
        context = x
        if self.reduction > 1:
            context = self.sr_norm(self.sr(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        tokens, context = x.reshape(batch, -1, channels), context.reshape(batch, -1, channels)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(tokens)), split(self.k(context)), split(self.v(context)))
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, channels))


class MixFFN(nn.Module):
    """Linear, 3x3 depthwise convolution, GELU, linear."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        x = self.dwconv(self.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(F.gelu(x))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, reduction: int, drop_path: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = EfficientAttention(width, heads, reduction, eps)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MixFFN(width, width * MLP_RATIO)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    def __init__(self, in_channels: int, width: int, depth: int, heads: int, reduction: int, first: bool,
                 drop_paths: list[float], eps: float) -> None:
        super().__init__()
        self.embed = PatchEmbedding(in_channels, width, 7 if first else 3, 4 if first else 2, eps)
        self.blocks = nn.ModuleList(Block(width, heads, reduction, drop_paths[i], eps) for i in range(depth))
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).permute(0, 3, 1, 2)  # channels-last strides: what oneDNN convolves without reordering


class MixTransformerBackbone(Backbone):
    """Four levels at strides 4..32 (``stages.<i>``), any input size."""

    def __init__(self, arch: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
                 drop_path_rate: float = 0.1, norm_eps: float = 1e-6) -> None:
        super().__init__()
        spec = ARCHS[arch]
        widths, depths = spec["widths"], spec["depths"]
        total = sum(depths)  # stochastic depth rising linearly over all blocks (plain floats: builds on the meta device)
        rates = [drop_path_rate * i / max(1, total - 1) for i in range(total)]
        starts = [sum(depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList(
            Stage(in_channels if i == 0 else widths[i - 1], widths[i], depths[i], HEADS[i], REDUCTIONS[i], i == 0,
                  rates[starts[i]:starts[i] + depths[i]], norm_eps)
            for i in range(4))
        self.apply(initialise)
        if weights:
            state = published_layout(load_local_state_dict(weights, arch), arch)
            name = "stages.0.embed.proj.weight"
            state[name] = adapt_first_conv_weight(state[name], in_channels)
            load_exactly(self, state, source=str(weights))
        elif pretrained:
            raise PretrainedWeightsUnavailable(f"backbone '{arch}' asked for ImageNet weights: {WEIGHTS_HELP}")
        info = BACKBONES.info(arch)
        self.channels, self.strides = list(info.channels), list(info.strides)
        self.mean, self.std = info.mean, info.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for stage in self.stages:
            x = self.run(stage, x)
            levels.append(x)
        return levels


def initialise(module: nn.Module) -> None:
    """The paper code's initialisation: truncated normal (std 0.02) linears, fan-out normal convolutions."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, (2.0 / fan_out) ** 0.5)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# transformers' names (segformer.encoder.*, as nvidia/mit-b* and every SegFormer checkpoint store them) -> ours
HUGGING_FACE = [
    (r"patch_embeddings\.(\d)\.proj\.", r"stages.\1.embed.proj."),
    (r"patch_embeddings\.(\d)\.layer_norm\.", r"stages.\1.embed.norm."),
    (r"block\.(\d)\.(\d+)\.layer_norm_1\.", r"stages.\1.blocks.\2.norm1."),
    (r"block\.(\d)\.(\d+)\.layer_norm_2\.", r"stages.\1.blocks.\2.norm2."),
    (r"block\.(\d)\.(\d+)\.attention\.self\.query\.", r"stages.\1.blocks.\2.attn.q."),
    (r"block\.(\d)\.(\d+)\.attention\.self\.key\.", r"stages.\1.blocks.\2.attn.k."),
    (r"block\.(\d)\.(\d+)\.attention\.self\.value\.", r"stages.\1.blocks.\2.attn.v."),
    (r"block\.(\d)\.(\d+)\.attention\.self\.sr\.", r"stages.\1.blocks.\2.attn.sr."),
    (r"block\.(\d)\.(\d+)\.attention\.self\.layer_norm\.", r"stages.\1.blocks.\2.attn.sr_norm."),
    (r"block\.(\d)\.(\d+)\.attention\.output\.dense\.", r"stages.\1.blocks.\2.attn.proj."),
    (r"block\.(\d)\.(\d+)\.mlp\.dense1\.", r"stages.\1.blocks.\2.mlp.fc1."),
    (r"block\.(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.", r"stages.\1.blocks.\2.mlp.dwconv."),
    (r"block\.(\d)\.(\d+)\.mlp\.dense2\.", r"stages.\1.blocks.\2.mlp.fc2."),
    (r"layer_norm\.(\d)\.", r"stages.\1.norm."),
]
# NVlabs' names (mit_b*.pth; stages counted from 1, keys and values in one ``kv`` linear)
NVLABS = [
    (r"patch_embed(\d)\.proj\.", "stages.{0}.embed.proj."),
    (r"patch_embed(\d)\.norm\.", "stages.{0}.embed.norm."),
    (r"block(\d)\.(\d+)\.attn\.norm\.", "stages.{0}.blocks.{1}.attn.sr_norm."),
    (r"block(\d)\.(\d+)\.(norm1|norm2|attn\.q|attn\.sr|attn\.proj|mlp\.fc1|mlp\.fc2)\.", "stages.{0}.blocks.{1}.{2}."),
    (r"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.", "stages.{0}.blocks.{1}.mlp.dwconv."),
    (r"norm(\d)\.", "stages.{0}.norm."),
]


def rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    """``key`` under the first rule whose pattern matches its start, or None."""
    for pattern, target in rules:
        match = re.match(pattern, key)
        if match:
            return match.expand(target) + key[match.end():]
    return None


def from_nvlabs(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVlabs' layout: stage numbers from 1, ``attn.kv`` split into ``k`` and ``v``; the classifier ``head`` dropped."""
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        kv = re.match(r"block(\d)\.(\d+)\.attn\.kv\.(weight|bias)$", key)
        if kv:
            stage, block, kind = int(kv.group(1)) - 1, kv.group(2), kv.group(3)
            k, v = value.chunk(2, dim=0)
            ours[f"stages.{stage}.blocks.{block}.attn.k.{kind}"] = k
            ours[f"stages.{stage}.blocks.{block}.attn.v.{kind}"] = v
            continue
        for pattern, target in NVLABS:
            match = re.match(pattern, key)
            if match:
                groups = [str(int(match.group(1)) - 1), *match.groups()[1:]]
                ours[target.format(*groups) + key[match.end():]] = value
                break
        else:
            ours[key] = value  # left as it is: load_exactly names it as unused
    return ours


def from_hugging_face(state: dict[str, torch.Tensor], prefix: str = "segformer.encoder.") -> dict[str, torch.Tensor]:
    """transformers' layout under ``prefix``; other keys (a classifier) dropped, unknown encoder keys kept to be named."""
    ours = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        ours[rename(local, HUGGING_FACE) or local] = value
    return ours


def published_layout(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """A MiT state dict in any of the layouts above (or ours) as this module's keys."""
    if any(k.startswith("segformer.encoder.") for k in state):
        return from_hugging_face(state)
    if any(k.startswith("patch_embed1.") for k in state):
        return from_nvlabs(state)
    if any(k.startswith("stages.0.embed.") for k in state):
        return dict(state)
    raise ValueError(f"backbone '{arch}': the weights file holds none of the MiT layouts (keys such as "
                     f"{sorted(state)[:3]}); give NVlabs' mit_b*.pth or Hugging Face's nvidia/mit-b* weights")


for _arch, _spec in ARCHS.items():
    _info = BackboneInfo(_spec["widths"], (4, 8, 16, 32), IMAGENET_MEAN, IMAGENET_STD,
                         f"ImageNet-1k ({_arch}: a file, backbone.weights)")
    BACKBONES.register(_arch, _info)(partial(MixTransformerBackbone, _arch))

