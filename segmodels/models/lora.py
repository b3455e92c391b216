"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") on a backbone, through peft.

The pretrained weights stay fixed; each adapted layer learns ``W + (alpha / rank) * B @ A`` with ``B`` starting
at zero, so training starts from the pretrained network exactly. Targets: every ``nn.Linear`` of the backbone
(a ViT's attention and MLP projections), or, in a backbone without one (a CNN), every ungrouped ``nn.Conv2d``
(peft's LoRA for convolutions); the backbone's new weights (a ViT's pyramid adapter) are trained in full instead.
"""
from __future__ import annotations

from torch import nn

from .backbones import Backbone


def lora_targets(backbone: Backbone) -> list[str]:
    """The names of the layers LoRA adapts (see the module's docstring)."""
    fresh = tuple(f"{name}." for name in backbone.fresh)
    named = [(n, m) for n, m in backbone.named_modules() if n and not f"{n}.".startswith(fresh)]
    linear = [n for n, m in named if isinstance(m, nn.Linear)]
    return linear or [n for n, m in named if isinstance(m, nn.Conv2d) and m.groups == 1]


def add_lora(backbone: Backbone, rank: int, alpha: float | None = None, dropout: float = 0.0) -> list[nn.Parameter]:
    """Adapters of ``rank`` on ``backbone``'s target layers, in place; returns the parameters that stay fixed
    (everything but the adapters and the backbone's new weights)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:
        raise ImportError(f"backbone.lora_rank={rank} needs the peft library: pip install 'segmodels[lora]' "
                          f"(or pip install peft), or set backbone.lora_rank=0") from error
    targets = lora_targets(backbone)
    if not targets:
        raise ValueError(f"backbone.lora_rank={rank}: the backbone has no linear or convolution layer to adapt")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=targets, bias="none")
    inject_adapter_in_model(config, backbone)
    fresh = {id(p) for name in backbone.fresh for p in getattr(backbone, name).parameters()}
    fixed = [p for n, p in backbone.named_parameters() if ".lora_" not in n and id(p) not in fresh]
    for parameter in backbone.parameters():
        parameter.requires_grad_(id(parameter) in fresh or all(parameter is not f for f in fixed))
    return fixed


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every adapter into its layer's weight and put the plain layer back, in place: the same function,
    with the state-dict keys and graph of a model without LoRA (what ONNX export and other runtimes want)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # without peft no model can hold LoRA layers: nothing to merge
        return module

    for name, layer in list(module.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, child, layer.get_base_layer())
    return module
