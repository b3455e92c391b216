"""Checkpoints in and out: fine-tuning from one (every weight whose name and shape match), and
hyper-parameters that rebuild the model from the checkpoint alone."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


def open_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """A checkpoint's contents, or an error naming the file, what is wrong and what to do instead of a bare
    traceback from deep inside torch or pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such checkpoint file; give the path of a .ckpt file (train.py "
                                f"prints the best one at the end; runs keep them in <run>/checkpoints/)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated zip, pickle garbage, an image renamed .ckpt ...
        raise ValueError(f"{key}={path}: the file cannot be read as a checkpoint ({type(error).__name__}: "
                         f"{str(error)[:200]}); it is truncated or not a PyTorch file. Use another checkpoint of the "
                         f"run (last.ckpt or best.ckpt beside it)") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={path}: not a Lightning checkpoint (no 'state_dict'); give a .ckpt file written by "
                         f"train.py")
    return checkpoint


def load_matching(module: nn.Module, checkpoint: str | Path) -> dict[str, list[str]]:
    """Copy into ``module`` each tensor of ``checkpoint`` with the same name and shape; the rest keep
    their fresh initialisation. Returns (and logs) what was loaded, reshaped away, or absent."""
    path = Path(checkpoint)
    state = open_checkpoint(path, "model.init_from")["state_dict"]
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
