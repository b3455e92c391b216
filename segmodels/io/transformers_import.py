"""Published segmentation checkpoints in Hugging Face transformers' format, as this project's models.

A transformers model folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin`` +
``preprocessor_config.json``, as ``save_pretrained`` or a hub download leaves it) is read without transformers: the
architecture named in ``config.json`` picks an importer (``IMPORTERS``), which rebuilds the equivalent backbone and
decoder of this project and renames every tensor. A tensor left unmapped on either side is an error naming it; what
exists only for training (an auxiliary head) is dropped and said so. Class names come from ``id2label``, the input
statistics from the preprocessor, and the label convention (``do_reduce_labels``) goes into the dataset settings the
model carries.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from segmodels.models.backbones.mit import ARCHS as MIT_ARCHS
from segmodels.models.backbones.mit import HEADS, MLP_RATIO, REDUCTIONS, from_hugging_face
from segmodels.models.factory import build_model
from segmodels.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What one transformers checkpoint becomes: the project's model options and the renaming of its tensors."""

    backbone: str
    decoder: str
    backbone_kwargs: dict[str, Any]
    decoder_kwargs: dict[str, Any]
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    dropped: tuple[str, ...] = ()  # source prefixes that exist for training only
    notes: list[str] = field(default_factory=list)


IMPORTERS: Registry = Registry("transformers architecture")


class ArchitectureMismatch(ValueError):
    """The checkpoint's architecture is one this project cannot express exactly."""


def is_transformers_folder(folder: str | Path) -> bool:
    """A folder with a transformers ``config.json`` (``model_type`` or ``architectures``, no ``format`` of ours)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return "format" not in config and ("architectures" in config or "model_type" in config)


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights: model.safetensors (read without running code) or pytorch_model.bin (weights-only)."""
    safetensors, pickle = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors.is_file():
        return load_file(str(safetensors))
    if pickle.is_file():
        return torch.load(pickle, map_location="cpu", weights_only=True)
    if (folder / "model.safetensors.index.json").is_file():
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
        return state
    raise FileNotFoundError(f"{folder} holds no weights: neither model.safetensors nor pytorch_model.bin; download the "
                            f"whole model folder (huggingface-cli download <name> --local-dir {folder})")


def architecture_of(config: dict[str, Any], path: Path) -> str:
    names = config.get("architectures") or []
    known = [name for name in names if name in IMPORTERS]
    if known:
        return known[0]
    raise ArchitectureMismatch(f"{path}: architecture {names or config.get('model_type')} cannot be imported; "
                               f"importable: {', '.join(IMPORTERS.names())}")


def class_names_of(config: dict[str, Any], path: Path) -> list[str]:
    id2label = config.get("id2label") or {}
    count = config.get("num_labels", len(id2label))
    if id2label and len(id2label) != count:
        raise ValueError(f"{path}: id2label has {len(id2label)} entries but num_labels is {count}; fix config.json")
    return [str(id2label.get(str(i), id2label.get(i, f"class_{i}"))) for i in range(count)] if id2label else \
        [f"class_{i}" for i in range(count)]


def preprocessing_of(folder: Path) -> dict[str, Any]:
    """Input statistics and label convention from ``preprocessor_config.json`` (ImageNet's when it is missing)."""
    path = folder / "preprocessor_config.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    factor = settings.get("rescale_factor", 1 / 255)
    if settings.get("do_rescale", True) and abs(factor - 1 / 255) > 1e-12:
        raise ArchitectureMismatch(f"{path}: rescale_factor {factor}; this project scales uint8 inputs by 1/255")
    normalize = settings.get("do_normalize", True)
    return {
        "mean": list(settings.get("image_mean", (0.485, 0.456, 0.406))) if normalize else [0.0, 0.0, 0.0],
        "std": list(settings.get("image_std", (0.229, 0.224, 0.225))) if normalize else [1.0, 1.0, 1.0],
        "reduce_zero_label": bool(settings.get("do_reduce_labels", settings.get("reduce_labels", False))),
        "found": path.is_file(),
    }


def map_exactly(source: dict[str, torch.Tensor], plan: Plan, target: dict[str, torch.Tensor], origin: str) -> dict:
    """``source`` renamed for ``target``; every tensor on either side must be accounted for, and shapes must agree."""
    kept = {k: v for k, v in source.items() if not k.startswith(plan.dropped)}
    dropped = sorted(set(source) - set(kept))
    mapped = plan.rename(kept)
    unmapped = sorted(k for k in mapped if k not in target)
    missing = sorted(k for k in target if k not in mapped)
    mismatched = [f"{k}: {tuple(mapped[k].shape)} -> {tuple(v.shape)}" for k, v in target.items()
                  if k in mapped and mapped[k].shape != v.shape]
    if unmapped or missing or mismatched:
        raise ValueError(f"{origin}: the import does not account for every tensor: {len(unmapped)} source tensors "
                         f"unmapped {unmapped[:5]}, {len(missing)} of ours left unfilled {missing[:5]}, "
                         f"{len(mismatched)} shapes differ {mismatched[:5]}")
    if dropped:
        log.info("%s: dropped %d tensors used only in training (%s)", origin, len(dropped),
                 ", ".join(sorted({k.split(".")[0] for k in dropped})))
    return mapped


@dataclass
class Source:
    """A transformers folder read and planned, nothing built yet: the model's options, its raw tensors and their
    renaming, and what the import learned (source, dataset settings, notes)."""

    hparams: dict[str, Any]
    state: dict[str, torch.Tensor]
    plan: Plan
    record: dict[str, Any]
    folder: Path

    def mapped(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors renamed for ``target`` (a model's state dict), every one accounted for."""
        return map_exactly(self.state, self.plan, target, str(self.folder))


def read_folder(folder: str | Path) -> Source:
    """A transformers model folder as this project's model options and tensors (see ``Source``)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    architecture = architecture_of(config, folder / "config.json")
    plan: Plan = IMPORTERS.get(architecture)(config, folder / "config.json")
    names = class_names_of(config, folder / "config.json")
    preprocessing = preprocessing_of(folder)
    hparams = {
        "backbone": plan.backbone, "decoder": plan.decoder, "num_classes": len(names),
        "in_channels": config.get("num_channels", 3), "pretrained": False, "backbone_kwargs": plan.backbone_kwargs,
        "decoder_kwargs": plan.decoder_kwargs, "class_names": names, "mean": preprocessing["mean"],
        "std": preprocessing["std"],
    }
    dataset = {"num_classes": len(names), "class_names": names, "reduce_zero_label": preprocessing["reduce_zero_label"],
               "ignore_index": config.get("semantic_loss_ignore_index", 255)}
    source = {"folder": str(folder.resolve()), "architecture": architecture, "name": config.get("_name_or_path"),
              "transformers_version": config.get("transformers_version"), "notes": plan.notes}
    return Source(hparams, read_state(folder), plan, {"source": source, "dataset": dataset}, folder)


def import_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(SegmentationModule keyword arguments, the model's state dict, what the import learned) for a transformers
    model folder; the model is built to check the mapping against (``model.init_from`` into another model)."""
    source = read_folder(folder)
    model = build_model(**{k: v for k, v in source.hparams.items() if k != "class_names"})
    return source.hparams, source.mapped(model.state_dict()), source.record


def require(config: dict[str, Any], path: Path, expected: dict[str, Any]) -> None:
    """Refuse a config whose fields differ from what the rebuilt model computes, naming each."""
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value

    differences = [f"{key}={config.get(key)!r} (this project's model: {value!r})" for key, value in expected.items()
                   if plain(config.get(key, value)) != plain(value)]
    if differences:
        raise ArchitectureMismatch(f"{path}: cannot be expressed exactly here: {'; '.join(differences)}")


@IMPORTERS.register("SegformerForSemanticSegmentation")
def segformer(config: dict[str, Any], path: Path) -> Plan:
    """SegFormer (MiT-B0..B5 + the all-MLP head): transformers' port of NVlabs' model, LayerNorm epsilon 1e-5."""
    widths, depths = list(config.get("hidden_sizes", [])), list(config.get("depths", []))
    arch = next((name for name, spec in MIT_ARCHS.items()
                 if list(spec["widths"]) == widths and list(spec["depths"]) == depths), None)
    if arch is None:
        known = "; ".join(f"{n}: hidden_sizes {list(s['widths'])} depths {list(s['depths'])}" for n, s in MIT_ARCHS.items())
        raise ArchitectureMismatch(f"{path}: hidden_sizes {widths} with depths {depths} is no MiT-B0..B5 ({known})")
    require(config, path, {"num_encoder_blocks": 4, "num_attention_heads": list(HEADS), "sr_ratios": list(REDUCTIONS),
                           "patch_sizes": [7, 3, 3, 3], "strides": [4, 2, 2, 2], "mlp_ratios": [MLP_RATIO] * 4,
                           "hidden_act": "gelu", "reshape_last_stage": True})

    def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ours = {f"backbone.{k}": v for k, v in from_hugging_face(state).items()}
        for key, value in state.items():
            if not key.startswith("decode_head."):
                if not key.startswith("segformer.encoder."):
                    ours[key] = value  # named as unmapped
                continue
            local = key.removeprefix("decode_head.")
            projection = re.match(r"linear_c\.(\d)\.proj\.(weight|bias)$", local)
            if projection:
                tensor = value[:, :, None, None] if projection.group(2) == "weight" else value
                ours[f"decoder.project.{projection.group(1)}.{projection.group(2)}"] = tensor
            elif local.startswith("linear_fuse."):
                ours["decoder.fuse.0." + local.removeprefix("linear_fuse.")] = value
            elif local.startswith("batch_norm."):
                ours["decoder.fuse.1." + local.removeprefix("batch_norm.")] = value
            elif local.startswith("classifier."):
                ours["decoder." + local] = value
            else:
                ours[key] = value
        return ours

    return Plan(arch, "segformer", {"norm_eps": 1e-5, "drop_path_rate": config.get("drop_path_rate", 0.1)},
                {"decoder_channels": config.get("decoder_hidden_size", 256),
                 "dropout": config.get("classifier_dropout_prob", 0.1)}, rename)
