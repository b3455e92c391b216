"""Which parameters a backbone's first stages hold, found by autograd for any backbone.

A stage is the part of the backbone that produces one level of its pyramid; stage ``i`` ends at
level ``i``. ``callbacks.freeze.frozen_stages=N`` keeps the first N stages fixed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .backbones import Backbone


def early_stages(backbone: Backbone, stages: int) -> tuple[list[nn.Parameter], list[nn.Module]]:
    """The parameters that the first ``stages`` levels depend on, and the BatchNorm layers holding only
    such parameters.

    Found by autograd rather than by a per-backbone list: a parameter belongs to the early stages when
    level ``stages - 1`` has a gradient with respect to it. The probe runs in eval mode, so no BatchNorm
    statistic moves.
    """
    if stages <= 0:
        return [], []
    if stages >= len(backbone.channels):
        raise ValueError(f"frozen_stages={stages}: the backbone has {len(backbone.channels)} levels; "
                         f"freeze fewer, or freeze it all with callbacks.freeze.unfreeze_at_epoch=-1")
    was_training, parameters = backbone.training, list(backbone.parameters())
    first = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
    side = 64 * backbone.pad_multiple // math.gcd(64, backbone.pad_multiple)  # whole patches for a ViT
    probe = torch.zeros(1, first.in_channels, side, side, device=first.weight.device)
    backbone.eval()
    with torch.enable_grad():
        level = backbone(probe)[stages - 1]
        if level is None:
            backbone.train(was_training)
            raise ValueError(f"frozen_stages={stages}: level {stages - 1} feeds no decoder input here (a ViT adapter "
                             f"keeps only the levels its decoder reads); freeze fewer stages or use another decoder")
        used = [p.requires_grad for p in parameters]
        for p in parameters:
            p.requires_grad_(True)
        grads = torch.autograd.grad(level.sum(), parameters, allow_unused=True)
        for p, flag in zip(parameters, used):
            p.requires_grad_(flag)
    backbone.train(was_training)
    fresh = {id(p) for name in backbone.fresh for p in getattr(backbone, name).parameters()}  # new weights stay trainable
    early = [p for p, g in zip(parameters, grads) if g is not None and id(p) not in fresh]
    ids = {id(p) for p in early}
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and any(True for _ in m.parameters(recurse=False))
             and all(id(p) in ids for p in m.parameters(recurse=False))]
    return early, norms
