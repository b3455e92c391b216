"""Checkpoints in and out: fine-tuning from one (every weight whose name and shape match), and
hyper-parameters that rebuild the model from the checkpoint alone."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


def load_matching(module: nn.Module, checkpoint: str | Path) -> dict[str, list[str]]:
    """Copy into ``module`` each tensor of ``checkpoint`` with the same name and shape; the rest keep
    their fresh initialisation. Returns (and logs) what was loaded, reshaped away, or absent."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from={path}: no such checkpoint file")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    own = module.state_dict()
    loaded = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    other_shape = [f"{k} {tuple(state[k].shape)} -> {tuple(v.shape)}"
                   for k, v in own.items() if k in state and state[k].shape != v.shape]
    absent = [k for k in own if k not in state]
    module.load_state_dict({k: state[k] for k in loaded}, strict=False)
    rank_zero_info(
        f"init_from {path}: loaded {len(loaded)} of {len(own)} tensors; re-initialised {len(other_shape)} of another "
        f"shape {other_shape[:4]} and {len(absent)} absent from the checkpoint {absent[:4]}"
    )
    return {"loaded": loaded, "other_shape": other_shape, "absent": absent}


def portable_hyperparameters(hparams: dict) -> dict:
    """The state dict holds every weight, so rebuilding from a checkpoint needs no download or local file."""
    hparams["pretrained"] = False
    if hparams.get("backbone_kwargs"):
        hparams["backbone_kwargs"] = {k: v for k, v in hparams["backbone_kwargs"].items() if k != "weights"}
    return hparams
