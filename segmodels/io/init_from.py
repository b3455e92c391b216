"""``model.init_from``: start a model from another's weights, a checkpoint or a model folder (this project's or a
transformers one), every tensor whose name and shape match."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from safetensors.torch import load_file
from torch import nn

from .checkpoint_reader import open_checkpoint
from .model_folder import read_pretrained
from .transformers_import import import_folder, is_transformers_folder, read_folder


def load_matching(module: nn.Module, checkpoint: str | Path, trust: bool = False) -> dict[str, list[str]]:
    """Copy into ``module`` each tensor of ``checkpoint`` with the same name and shape; the rest keep
    their fresh initialisation. Returns (and logs) what was loaded, reshaped away, or absent."""
    path = Path(checkpoint)
    state = folder_state(path) if path.is_dir() else open_checkpoint(path, "model.init_from", trust)["state_dict"]
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


def folder_state(folder: Path) -> dict[str, torch.Tensor]:
    """A model folder's weights under the LightningModule's names (``model.``): this project's folder (train.py's
    ``<run>/model``, convert.py's) or a transformers one, imported (see ``transformers_import``)."""
    if is_transformers_folder(folder):
        state = import_folder(folder)[1]
    else:
        state = load_file(str(read_pretrained(folder)[1]))
    return {f"model.{k}": v for k, v in state.items()}


def source_architecture(folder: str | Path) -> dict:
    """The architecture a model folder holds (this project's or a transformers one): backbone and decoder with their
    options, and the input statistics it was trained with; for ``model.architecture=source``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model.init_from={folder}: model.architecture=source reads the architecture from a "
                                f"model folder (train.py's <run>/model, convert.py's output or a transformers folder); "
                                f"this is not a folder")
    hparams = read_folder(folder).hparams if is_transformers_folder(folder) else read_pretrained(folder)[0]
    keys = ("backbone", "backbone_kwargs", "decoder", "decoder_kwargs", "mean", "std", "in_channels")
    return {key: hparams.get(key) for key in keys}
