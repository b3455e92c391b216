"""Each backbone's and decoder's options, with their defaults, for Hydra's config groups.

The defaults live in one place, the factory's signature. ``register_options`` stores them in Hydra's
ConfigStore as ``options/backbone/<name>`` and ``options/decoder/<name>``, and each file in
``conf/backbone/`` and ``conf/decoder/`` starts from its entry, so ``decoder.fc_channels=4096`` is
checked against the real options (a typo is refused) without a second copy of the defaults.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from segmodels.models.backbones import BACKBONES
from segmodels.models.decoders import DECODERS
from segmodels.models.factory import tune_backbone
from segmodels.training.cached_training import feature_cache_options

# what build_model passes itself, or the config sets elsewhere (in_channels is a top-level key)
NOT_OPTIONS = {"backbone": {"in_channels", "model_name"}, "decoder": {"channels", "strides", "num_classes"}}


def container(value: Any) -> Any:
    """A config value as plain Python (a ListConfig or DictConfig as a list or dict; anything else as it is)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def options_of(factory: Callable, exclude: set[str]) -> dict[str, Any]:
    """The keyword options of ``factory`` (a class or a partial) with their defaults."""
    parameters = inspect.signature(factory).parameters.values()
    exclude = exclude | set(getattr(factory, "keywords", {}))  # fixed by a partial: FCN's skips
    return {
        p.name: plain(p.default) for p in parameters
        if p.name not in exclude and p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def register_options() -> None:
    store = ConfigStore.instance()
    for kind, registry in (("backbone", BACKBONES), ("decoder", DECODERS)):
        for name in registry.names():
            options = options_of(registry.get(name), NOT_OPTIONS[kind])
            if kind == "backbone":  # LoRA and gradient checkpointing: every backbone takes them
                options.update(options_of(tune_backbone, set()))
                options.update(options_of(feature_cache_options, set()))  # backbone.cache=true ...
            store.store(group=f"options/{kind}", name=name, node=options)
