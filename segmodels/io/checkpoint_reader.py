"""Checkpoints in: opening one safely, fine-tuning from one (every weight whose name and shape match), and
hyper-parameters that rebuild the model from the checkpoint alone.

Every .ckpt is opened with ``weights_only=True``: its pickle may hold tensors, numbers, strings and containers,
nothing that names a function or class to call, so a hostile file cannot run code (PyTorch's default since 2.6). The
files this project writes need nothing more (the RNG states ``ExactResume`` saves are tensors and numbers), so no
type is allowlisted. A file that asks for more is refused before any of it is unpickled, naming what it asks for;
``trust_checkpoint=true`` opens it the old way, for a file the user vouches for.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from segmodels.deprecation import moved_attribute
from segmodels.models.decoders import DECODERS


class UnsafeCheckpoint(ValueError):
    """A checkpoint whose pickle names globals a weights-only load refuses (it could run code when opened)."""


def refusal(path: Path, key: str, names: list[str]) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"{key}={path}: the checkpoint asks for {', '.join(names)}, which a weights-only load refuses because "
        f"unpickling it could run code; nothing of it was run. For a file you trust (you wrote it, or you trust its "
        f"source), open it with trust_checkpoint=true, or convert it once into a model folder that never needs trust: "
        f"SegmentationModule.restore('{path}', trust=True).save_pretrained('<folder>'), then "
        f"SegmentationModule.from_pretrained('<folder>')")


def check_safe(path: str | Path, key: str = "ckpt_path") -> None:
    """Refuse ``path`` if its pickle names anything beyond tensors and plain containers: read from the opcodes
    (torch's ``get_unsafe_globals_in_checkpoint``), nothing executed."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint: the weights-only load itself refuses it, or names the damage
        return
    if names:
        raise refusal(Path(path), key, names)


def open_checkpoint(path: str | Path, key: str = "ckpt_path", trust: bool = False) -> dict:
    """A checkpoint's contents, loaded weights-only unless ``trust``; or an error naming the file, what is wrong and
    what to do instead of a bare traceback from deep inside torch or pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such checkpoint file; give the path of a .ckpt file (train.py "
                                f"prints the best one at the end; runs keep them in <run>/checkpoints/)")
    if not trust:
        check_safe(path, key)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):  # an older file format the opcode scan cannot read
            raise refusal(path, key, [str(error).split("GLOBAL ")[-1].split(" ")[0] if "GLOBAL " in str(error)
                                      else "a global"]) from None
        raise ValueError(f"{key}={path}: the file cannot be read as a checkpoint ({type(error).__name__}: "
                         f"{str(error)[:200]}); it is truncated or not a PyTorch file. Use another checkpoint of the "
                         f"run (last.ckpt or best.ckpt beside it)") from error
    except Exception as error:  # truncated zip, pickle garbage, an image renamed .ckpt ...
        raise ValueError(f"{key}={path}: the file cannot be read as a checkpoint ({type(error).__name__}: "
                         f"{str(error)[:200]}); it is truncated or not a PyTorch file. Use another checkpoint of the "
                         f"run (last.ckpt or best.ckpt beside it)") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={path}: not a Lightning checkpoint (no 'state_dict'); give a .ckpt file written by "
                         f"train.py")
    return checkpoint


def portable_hyperparameters(hparams: dict) -> dict:
    """The state dict holds every weight, so rebuilding from a checkpoint needs no download or local file."""
    hparams["pretrained"] = False
    if hparams.get("backbone_kwargs"):
        hparams["backbone_kwargs"] = {k: v for k, v in hparams["backbone_kwargs"].items() if k != "weights"}
    return hparams


def legacy_options(hparams: dict, weight_names) -> dict:
    """``hparams`` with the old value of an option whose default changed, when the checkpoint does not name the option
    and its weights (``weight_names``: the model's or the module's, ``model.`` prefixed) have the old layout. A decoder
    whose default changed says so in its ``legacy_layout``: (option, the value checkpoints before the change were
    built with, a weight name relative to the model, whether that older layout has the weight (True) or lacks it)."""
    decoder = hparams.get("decoder")
    entry = getattr(DECODERS.get(decoder), "legacy_layout", None) if decoder in DECODERS else None
    if not entry:
        return hparams
    option, old, marker, old_has_it = entry
    options = dict(hparams.get("decoder_kwargs") or {})
    has_it = any(name == marker or name.endswith("." + marker) for name in weight_names)
    if option in options or has_it != old_has_it:
        return hparams
    return {**hparams, "decoder_kwargs": {**options, option: old}}


RENAMED = {"load_matching": "segmodels.io.init_from.load_matching"}  # model.init_from reads model folders too


def __getattr__(name: str):
    return moved_attribute(__name__, RENAMED, name)
