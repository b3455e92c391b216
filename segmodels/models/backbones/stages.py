"""Which parameters a backbone's first stages hold, found by autograd for any backbone.

A stage is the part of the backbone that produces one level of its pyramid; stage ``i`` ends at
level ``i``. ``callbacks.freeze.frozen_stages=N`` keeps the first N stages fixed.

The functions take any module with a backbone's attributes (``channels``, ``pad_multiple``, ``fresh``), so this
file needs nothing from ``base.py``, which calls it.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _probe(backbone: nn.Module, parameters: list[nn.Parameter]) -> list[tuple[torch.Tensor | None, ...] | None]:
    """For each level, the gradient of its sum with respect to ``parameters`` (None where a parameter does not
    feed it), from one forward pass in eval mode on a blank image, so no BatchNorm statistic moves."""
    was_training = backbone.training
    first = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
    side = 64 * backbone.pad_multiple // math.gcd(64, backbone.pad_multiple)  # whole patches for a ViT
    probe = torch.zeros(1, first.in_channels, side, side, device=first.weight.device)
    flags = [p.requires_grad for p in parameters]
    backbone.eval()
    try:
        with torch.enable_grad():
            for p in parameters:
                p.requires_grad_(True)
            levels = backbone(probe)
            return [None if level is None else torch.autograd.grad(level.sum(), parameters, allow_unused=True,
                                                                     retain_graph=True)
                    for level in levels]
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)
        backbone.train(was_training)


def _pretrained(backbone: nn.Module) -> list[nn.Parameter]:
    fresh = {id(p) for name in backbone.fresh for p in getattr(backbone, name).parameters()}  # new weights
    return [p for p in backbone.parameters() if id(p) not in fresh]


def early_stages(backbone: nn.Module, stages: int) -> tuple[list[nn.Parameter], list[nn.Module]]:
    """The parameters that the first ``stages`` levels depend on, and the BatchNorm layers holding only
    such parameters.

    Found by autograd rather than by a per-backbone list: a parameter belongs to the early stages when
    level ``stages - 1`` has a gradient with respect to it. A backbone's new weights (``fresh``) stay trainable.
    """
    if stages <= 0:
        return [], []
    if stages >= len(backbone.channels):
        raise ValueError(f"frozen_stages={stages}: the backbone has {len(backbone.channels)} levels; "
                         f"freeze fewer, or freeze it all with callbacks.freeze.unfreeze_at_epoch=-1")
    parameters = _pretrained(backbone)
    grads = _probe(backbone, parameters)[stages - 1]
    if grads is None:
        raise ValueError(f"frozen_stages={stages}: level {stages - 1} feeds no decoder input here (a ViT adapter "
                         f"keeps only the levels its decoder reads); freeze fewer stages or use another decoder")
    early = [p for p, g in zip(parameters, grads) if g is not None]
    ids = {id(p) for p in early}
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and any(True for _ in m.parameters(recurse=False))
             and all(id(p) in ids for p in m.parameters(recurse=False))]
    return early, norms


def stage_parameters(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The pretrained parameters grouped by stage, input to output: each goes to the first level that depends on
    it (a parameter no level depends on joins the last group). New weights (``fresh``) are in none."""
    parameters = _pretrained(backbone)
    stages: list[list[nn.Parameter]] = []
    placed: set[int] = set()
    for grads in _probe(backbone, parameters):
        if grads is None:
            continue
        stage = [p for p, g in zip(parameters, grads) if g is not None and id(p) not in placed]
        placed.update(id(p) for p in stage)
        if stage:
            stages.append(stage)
    rest = [p for p in parameters if id(p) not in placed]
    if rest:
        stages[-1].extend(rest)
    return stages
