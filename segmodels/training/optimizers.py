"""Optimisers and learning-rate schedules by name, built from plain values."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from segmodels.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("sgd")(torch.optim.SGD)
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)

SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry("scheduler")


@SCHEDULES.register("constant")
def constant(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


@SCHEDULES.register("cosine")
def cosine(total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("poly")
def poly(total_steps: int, warmup_steps: int = 0, power: float = 0.9, min_factor: float = 0.0) -> Callable[[int], float]:
    """(1 - step / total)^power, decaying to ``min_factor`` x lr (mmsegmentation's ``min_lr``) rather than 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return min_factor + (1 - min_factor) * max(0.0, 1 - step / max(1, total_steps)) ** power

    return factor


@SCHEDULES.register("step")
def step(total_steps: int, warmup_steps: int = 0, milestones: tuple[float, ...] = (0.6, 0.9),
         gamma: float = 0.1) -> Callable[[int], float]:
    """x ``gamma`` at each milestone, given as a fraction of training (0.6: after 60% of the steps)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return gamma ** sum(step >= m * total_steps for m in milestones)

    return factor


# a ViT's embeddings and tokens, a Swin's position tables: no weight decay with the norms and biases (timm's
# ``no_weight_decay()``; the Swin authors' segmentation configs exempt the tables too)
EMBEDDINGS = ("pos_embed", "cls_token", "reg_token", "dist_token", "mask_token", "relative_position_bias_table",
              "absolute_pos_embed")


def parameter_groups(named: dict[str, Iterable[tuple[str, torch.nn.Parameter]]], lrs: dict[str, float],
                     weight_decay: float, no_decay_norm_bias: bool) -> list[dict[str, Any]]:
    """One group per part (backbone, decoder), split in two when norms, biases and a ViT's embeddings get no
    weight decay.

    Every group exists from the start, so a scheduler never sees one appear when a backbone is unfrozen.
    """
    groups = []
    for part, parameters in named.items():
        decay, no_decay = [], []
        for name, parameter in parameters:
            skip = parameter.ndim <= 1 or name.rpartition(".")[2] in EMBEDDINGS
            (no_decay if no_decay_norm_bias and skip else decay).append(parameter)
        groups.append({"params": decay, "lr": lrs[part], "weight_decay": weight_decay, "name": part})
        if no_decay:
            groups.append({"params": no_decay, "lr": lrs[part], "weight_decay": 0.0, "name": f"{part}_no_decay"})
    return groups


def build_optimizer(groups: Iterable[dict[str, Any]], name: str, **kwargs: Any) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(list(groups), **kwargs)


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int, name: str, **kwargs: Any):
    """A per-iteration LambdaLR (the convention for poly and cosine in segmentation)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, SCHEDULES.get(name)(total_steps, **kwargs))


def layer_rates(model: torch.nn.Module, lr: float, layer_decay: float | None) -> tuple[dict, dict[str, float]]:
    """Parameters by part and each part's learning rate: ``backbone`` and ``decoder`` at ``lr``, or with
    ``layer_decay`` one part per backbone layer (``model.backbone.layers()``, input to output), layer ``i`` of
    ``n`` at ``lr x layer_decay^(n - i)`` (BEiT's layer-wise decay: each layer at the next one's rate times the
    factor). The decoder and the backbone's new weights (``fresh``) get ``lr``."""
    fresh = tuple(f"backbone.{name}." for name in model.backbone.fresh)
    backbone = [(n, p) for n, p in model.named_parameters() if n.startswith("backbone.") and not n.startswith(fresh)]
    decoder = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.") or n.startswith(fresh)]
    if not layer_decay:
        return {"backbone": backbone, "decoder": decoder}, {"backbone": lr, "decoder": lr}
    if not 0 < layer_decay <= 1:
        raise ValueError(f"optimizer.layer_decay={layer_decay}: give a factor in (0, 1], e.g. 0.75, or null for none")
    names = {id(p): n for n, p in backbone}
    layers = model.backbone.layers()
    named = {f"backbone_layer{i}": [(names[id(p)], p) for p in layer] for i, layer in enumerate(layers)}
    rates = {f"backbone_layer{i}": lr * layer_decay ** (len(layers) - i) for i in range(len(layers))}
    placed = {id(p) for layer in layers for p in layer}
    if placed != set(names):
        missing = [n for n, p in backbone if id(p) not in placed][:4]
        raise RuntimeError(f"layer decay: backbone.layers() misses parameters {missing}; every backbone parameter must "
                           f"be in one layer")
    return {**named, "decoder": decoder}, {**rates, "decoder": lr}


def build_optimizer_from_settings(
    model: torch.nn.Module, settings: dict[str, Any], global_batch: int | None
) -> torch.optim.Optimizer:
    """The optimiser ``settings`` (the ``optimizer`` config group) describe for ``model``'s backbone and decoder.

    ``scale_lr_by_batch: B`` applies the linear scaling rule, lr x global batch / B (when the global
    batch is known); ``backbone_lr_factor`` scales every backbone rate, ``layer_decay`` see ``layer_rates``.
    """
    settings = dict(settings)
    name, lr = settings.pop("name"), settings.pop("lr")
    backbone_factor = settings.pop("backbone_lr_factor", 1.0)
    no_decay_norm_bias = settings.pop("no_decay_norm_bias", False)
    reference_batch = settings.pop("scale_lr_by_batch", None)
    layer_decay = settings.pop("layer_decay", None)
    if reference_batch and global_batch:
        lr *= global_batch / reference_batch
    weight_decay = settings.pop("weight_decay", 0.0)
    named, rates = layer_rates(model, lr, layer_decay)
    rates = {part: rate * (backbone_factor if part != "decoder" else 1.0) for part, rate in rates.items()}
    groups = parameter_groups(named, rates, weight_decay, no_decay_norm_bias)
    return build_optimizer(groups, name, lr=lr, **settings)
