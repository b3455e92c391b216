"""Loading published ImageNet weights: from the torch hub cache, or a download, never silently neither."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from safetensors.torch import load_file
from torchvision.models import WeightsEnum


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and cannot be had; we never fall back to random init."""


def hub_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def torchvision_state_dict(weights: WeightsEnum, backbone: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights``: the cached file if present, else a download."""
    path = hub_cache_path(weights.url)
    try:
        return weights.get_state_dict(progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        if path.exists():
            raise PretrainedWeightsUnavailable(
                f"backbone '{backbone}': cannot read the cached weights file {path}: {error}. "
                f"Delete it to download it again from {weights.url}, or set backbone.pretrained=false."
            ) from error
        raise PretrainedWeightsUnavailable(
            f"backbone '{backbone}' asked for ImageNet weights, but {path} is not in the torch hub "
            f"cache and downloading {weights.url} failed ({error}). Either put that file at {path} "
            f"(download it on a machine with internet; TORCH_HOME moves the cache), or train from "
            f"random weights with backbone.pretrained=false."
        ) from error


def unreadable_weights(path: Path, backbone: str, error: BaseException) -> str:
    return (f"backbone '{backbone}': weights file {path} cannot be read ({type(error).__name__}: {str(error)[:160]}); it "
            f"is truncated or not a PyTorch/safetensors state dict. Download or copy it again, or give another file "
            f"with backbone.weights=<path>")


def load_local_state_dict(path: str | Path, backbone: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone '{backbone}': weights file {path} does not exist; give backbone.weights the path "
            f"of a state dict saved in that backbone's published key layout"
        )
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu",
                                                                                         weights_only=True)
    except Exception as error:  # truncated zip, pickle garbage, a checkpoint with objects
        raise ValueError(unreadable_weights(path, backbone, error)) from error
    if not isinstance(state, dict):
        raise ValueError(f"backbone '{backbone}': weights file {path} holds a {type(state).__name__}, not a state dict "
                         f"(name -> tensor); save model.state_dict()")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def load_exactly(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()) -> None:
    """Load ``state``, failing if any weight of ``module`` would stay unloaded or any key go unused.

    Keys starting with a prefix in ``ignore`` (a classifier head the backbone drops) may stay unused.
    """
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                  for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unused or mismatched:
        raise RuntimeError(
            f"weights from {source} do not fit: {len(missing)} weights left unloaded {missing[:3]}, "
            f"{len(unused)} keys unused {unused[:3]}, {len(mismatched)} shapes differ {mismatched[:3]}"
        )
    module.load_state_dict(state, strict=True)


def published_state(
    backbone: str, weights: WeightsEnum, pretrained: bool, path: str | None
) -> dict[str, torch.Tensor] | None:
    """The state dict a torchvision backbone starts from: a local file, the published weights, or none."""
    if path:
        return load_local_state_dict(path, backbone)
    if pretrained:
        return torchvision_state_dict(weights, backbone)
    return None
