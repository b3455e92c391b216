"""Any timm model that supports ``features_only``: ``backbone=timm backbone.name=convnext_tiny``.

Names the registry does not know are looked up in timm (``timm/<name>`` forces timm for a name the
registry also has, e.g. ``timm/resnet50``). timm's own pretrained config gives mean/std, and timm
adapts the first convolution to ``in_channels``.
"""
from __future__ import annotations

from functools import partial

import timm
import torch

from .base import Backbone
from .registry import BACKBONES
from .weights import PretrainedWeightsUnavailable


class TimmBackbone(Backbone):
    def __init__(self, model_name: str = "convnext_tiny", pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
                 out_indices: list[int] | None = None) -> None:
        super().__init__()
        options = {"features_only": True, "in_chans": in_channels}
        if out_indices is not None:
            options["out_indices"] = tuple(out_indices)
        if weights:
            options.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        else:
            options["pretrained"] = pretrained
        try:
            self.net = timm.create_model(model_name, **options)
        except (OSError, RuntimeError) as error:
            if weights or not pretrained or isinstance(error, RuntimeError) and "state_dict" in str(error):
                raise
            raise PretrainedWeightsUnavailable(
                f"timm backbone '{model_name}' asked for pretrained weights, which are not in the Hugging Face "
                f"cache (HF_HOME) and could not be downloaded ({error}). Either download them on a machine with "
                f"internet and copy the cache, give a local file with backbone.weights=/path/to/state_dict, or "
                f"train from random weights with backbone.pretrained=false."
            ) from error
        self.channels = self.net.feature_info.channels()
        self.strides = self.net.feature_info.reduction()
        config = self.net.pretrained_cfg
        self.mean, self.std = tuple(config["mean"]), tuple(config["std"])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


def resolve_timm(name: str):
    """The factory for a timm model name (with or without ``timm/``), or None if timm has no such model."""
    model_name = name.removeprefix("timm/")
    return partial(TimmBackbone, model_name) if timm.is_model(model_name) else None


BACKBONES.register("timm")(TimmBackbone)  # build_model("timm", ..., backbone_kwargs={"model_name": ...})
BACKBONES.fallback = resolve_timm
