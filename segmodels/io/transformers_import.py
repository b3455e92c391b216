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
import math
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


@dataclass
class BackbonePlan:
    """What a transformers ``*Backbone`` becomes: our backbone's options and the renaming of its tensors, from names
    after the backbone's own prefix to ours after ``backbone.``; a name it does not know is kept as it was (prefixed),
    so the check names it. ``dropped``: prefixes (after the backbone's) of tensors the outputs never use."""

    kwargs: dict[str, Any]
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    dropped: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def tensors(self, state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        """The backbone's tensors of ``state`` (those under ``prefix``) renamed as ours."""
        local = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
        renamed = self.rename(local)
        return {key if key.startswith("backbone.") else prefix + key: value for key, value in renamed.items()}


def per_tensor(rename: Callable[[str], str | None]) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """A renaming of one name at a time (None: unknown) as a renaming of the backbone's whole state."""
    def whole(local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"backbone.{new}" if (new := rename(key)) else key: value for key, value in local.items()}

    return whole


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
        log.info("%s: dropped %d tensors inference never uses (%s)", origin, len(dropped),
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


def joined_projections(parts: dict[tuple[str, str], dict[str, torch.Tensor]], name: str,
                       order: tuple[str, str, str] = ("q", "k", "v")) -> dict[str, torch.Tensor]:
    """Separate query, key and value projections (transformers' layout) as one in-projection, [q; k; v] as
    ``nn.MultiheadAttention`` and timm's ``qkv`` keep them: ``parts`` by (layer, weight|bias), ``name`` the target
    with ``{layer}`` and ``{kind}`` (weight or bias) to fill in."""
    return {name.format(layer=layer, kind=kind): torch.cat([found[o] for o in order])
            for (layer, kind), found in parts.items()}


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


CONVNEXT_STEM = {"embeddings.patch_embeddings": "net.stem_0", "embeddings.layernorm": "net.stem_1"}
CONVNEXT_LAYER = {"dwconv": "conv_dw", "layernorm": "norm", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2",
                  "layer_scale_parameter": "gamma"}


def convnext_backbone(config: dict[str, Any], path: Path) -> BackbonePlan:
    """transformers' ``ConvNextBackbone`` as timm's ConvNeXt (``model_kwargs`` give its depths and widths) with a
    LayerNorm on each output (``out_norm``, transformers' ``hidden_states_norms``)."""
    backbone = config.get("backbone_config") or {}
    require(backbone, path, {"model_type": "convnext", "num_stages": 4, "patch_size": 4, "hidden_act": "gelu",
                             "out_features": ["stage1", "stage2", "stage3", "stage4"]})
    if not backbone.get("layer_scale_init_value", 1e-6):
        raise ArchitectureMismatch(f"{path}: a ConvNeXt without layer scale (layer_scale_init_value 0) is not built "
                                   f"here")
    kwargs = {"model_name": "convnext_tiny", "out_norm": True,
              "model_kwargs": {"depths": list(backbone["depths"]), "dims": list(backbone["hidden_sizes"]),
                               "conv_mlp": False, "drop_path_rate": backbone.get("drop_path_rate", 0.0)}}

    def rename(key: str) -> str | None:
        module, _, name = key.rpartition(".")
        if module in CONVNEXT_STEM:
            return f"{CONVNEXT_STEM[module]}.{name}"
        found = re.match(r"encoder\.stages\.(\d+)\.downsampling_layer\.(\d)\.(weight|bias)$", key)
        if found:
            return f"net.stages_{found.group(1)}.downsample.{found.group(2)}.{found.group(3)}"
        found = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(\w+)(\.weight|\.bias)?$", key)
        if found and found.group(3) in CONVNEXT_LAYER:
            return (f"net.stages_{found.group(1)}.blocks.{found.group(2)}.{CONVNEXT_LAYER[found.group(3)]}"
                    f"{found.group(4) or ''}")
        found = re.match(r"hidden_states_norms\.stage(\d)\.(weight|bias)$", key)
        if found:
            return f"norms.{int(found.group(1)) - 1}.{found.group(2)}"
        return None

    return BackbonePlan(kwargs, per_tensor(rename))


def resnet_backbone(config: dict[str, Any], path: Path) -> BackbonePlan:
    """transformers' ``ResNetBackbone`` (bottleneck blocks, stride in the 3x3 conv: torchvision's v1.5) as timm's
    ResNet with its depths and widths (``model_kwargs``)."""
    backbone = config.get("backbone_config") or {}
    require(backbone, path, {"model_type": "resnet", "layer_type": "bottleneck", "embedding_size": 64,
                             "hidden_act": "relu", "downsample_in_first_stage": False,
                             "downsample_in_bottleneck": False,
                             "out_features": ["stage1", "stage2", "stage3", "stage4"]})
    kwargs = {"model_name": "resnet50", "model_kwargs": {"layers": list(backbone["depths"]),
                                                         "channels": [w // 4 for w in backbone["hidden_sizes"]]}}

    def rename(key: str) -> str | None:
        found = re.match(r"embedder\.embedder\.(convolution|normalization)\.(\w+)$", key)
        if found:
            return f"net.{'conv1' if found.group(1) == 'convolution' else 'bn1'}.{found.group(2)}"
        found = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.(\w+)$", key)
        if found:
            part = "0" if found.group(3) == "convolution" else "1"
            return f"net.layer{int(found.group(1)) + 1}.{found.group(2)}.downsample.{part}.{found.group(4)}"
        found = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.(convolution|normalization)\.(\w+)$", key)
        if found:
            part = ("conv" if found.group(4) == "convolution" else "bn") + str(int(found.group(3)) + 1)
            return f"net.layer{int(found.group(1)) + 1}.{found.group(2)}.{part}.{found.group(5)}"
        return None

    return BackbonePlan(kwargs, per_tensor(rename))


SWIN_BLOCK = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
              "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
SWIN_PROJECTION = {"query": "q", "key": "k", "value": "v"}


def swin_backbone(config: dict[str, Any], path: Path) -> BackbonePlan:
    """transformers' ``SwinBackbone`` as timm's Swin at the config's shape (``model_kwargs``) with the reference's
    windows at any size (``backbone.swin.SwinBackbone``: padded, then shifted in every odd block, as transformers'
    backbone does with ``always_partition``) and a LayerNorm on each output (``hidden_states_norms``). Separate
    query, key and value projections become timm's one ``qkv``; transformers' stage i ends with the patch merging
    that timm's stage i + 1 begins with."""
    backbone = config.get("backbone_config") or {}
    require(backbone, path, {"model_type": "swin", "hidden_act": "gelu", "qkv_bias": True,
                             "use_absolute_embeddings": False, "layer_norm_eps": 1e-5,
                             "out_features": ["stage1", "stage2", "stage3", "stage4"]})
    kwargs = {"model_name": "swin_tiny_patch4_window7_224", "out_norm": True,
              "model_kwargs": {"embed_dim": backbone["embed_dim"], "depths": list(backbone["depths"]),
                               "num_heads": list(backbone["num_heads"]), "window_size": backbone["window_size"],
                               "patch_size": backbone.get("patch_size", 4),
                               "mlp_ratio": backbone.get("mlp_ratio", 4.0),
                               "drop_path_rate": backbone.get("drop_path_rate", 0.1)}}

    def rename(local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ours: dict[str, torch.Tensor] = {}
        projections: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key, value in local.items():
            embedding = re.match(r"embeddings\.(patch_embeddings\.projection|norm)\.(weight|bias)$", key)
            block = re.match(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
            table = re.match(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.relative_position_bias_table$",
                             key)
            merging = re.match(r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$", key)
            norm = re.match(r"hidden_states_norms\.stage(\d)\.(weight|bias)$", key)
            if embedding:
                part = "proj" if embedding.group(1) == "patch_embeddings.projection" else "norm"
                ours[f"backbone.net.patch_embed.{part}.{embedding.group(2)}"] = value
            elif table:
                ours[f"backbone.net.layers_{table.group(1)}.blocks.{table.group(2)}.attn."
                     f"relative_position_bias_table"] = value
            elif block and block.group(3).removeprefix("attention.self.") in SWIN_PROJECTION:
                layer = f"{block.group(1)}.blocks.{block.group(2)}"
                kind = SWIN_PROJECTION[block.group(3).removeprefix("attention.self.")]
                projections.setdefault((layer, block.group(4)), {})[kind] = value
            elif block and block.group(3) in SWIN_BLOCK:
                ours[f"backbone.net.layers_{block.group(1)}.blocks.{block.group(2)}.{SWIN_BLOCK[block.group(3)]}."
                     f"{block.group(4)}"] = value
            elif merging:
                ours[f"backbone.net.layers_{int(merging.group(1)) + 1}.downsample.{merging.group(2)}."
                     f"{merging.group(3)}"] = value
            elif norm:
                ours[f"backbone.norms.{int(norm.group(1)) - 1}.{norm.group(2)}"] = value
            else:
                ours[key] = value  # named as unmapped
        return ours | joined_projections(projections, "backbone.net.layers_{layer}.attn.qkv.{kind}")

    return BackbonePlan(kwargs, rename, ("swin.layernorm.",),
                        ["the Swin encoder's final LayerNorm (swin.layernorm) is not on the backbone's outputs "
                         "(transformers' SwinBackbone never applies it) and was dropped"])


BACKBONES_OF = {"resnet": resnet_backbone, "convnext": convnext_backbone, "swin": swin_backbone}  # theirs -> ours


def backbone_of(config: dict[str, Any], path: Path, importable: tuple[str, ...], head: str) -> BackbonePlan:
    """The plan for the config's backbone, if it is one ``head`` imports with."""
    kind = (config.get("backbone_config") or {}).get("model_type")
    if kind not in importable:
        raise ArchitectureMismatch(f"{path}: {head} on a {kind} backbone cannot be imported; importable: "
                                   f"{', '.join(importable)}")
    return BACKBONES_OF[kind](config, path)


UPERNET_MODULE = {"bottleneck": "bottleneck", "fpn_bottleneck": "fuse"}
CONV_NORM = {"conv": "0", "batch_norm": "1"}  # transformers' UperNetConvModule -> our ConvNormAct


@IMPORTERS.register("UperNetForSemanticSegmentation")
def upernet(config: dict[str, Any], path: Path) -> Plan:
    """UperNet (a ConvNeXt or Swin backbone + transformers' UperNetHead, mmsegmentation's UPerHead): our ``upernet``
    with BatchNorm in the 1x1 pooling branch (``pool_norm``) on timm's ConvNeXt or Swin with output norms. The FCN
    auxiliary head exists for training only and is dropped."""
    backbone = backbone_of(config, path, ("convnext", "swin"), "UperNet")
    require(config, path, {"pool_scales": [1, 2, 3, 6]})

    def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ours = backbone.tensors(state, "backbone.")
        for key, value in state.items():
            if key.startswith("backbone."):
                continue
            local = key.removeprefix("decode_head.")
            found = re.match(r"(bottleneck|fpn_bottleneck)\.(conv|batch_norm)\.(\w+)$", local)
            if found:
                ours[f"decoder.{UPERNET_MODULE[found.group(1)]}.{CONV_NORM[found.group(2)]}.{found.group(3)}"] = value
                continue
            found = re.match(r"(lateral_convs|fpn_convs)\.(\d+)\.(conv|batch_norm)\.(\w+)$", local)
            if found:
                module = "lateral" if found.group(1) == "lateral_convs" else "output"
                ours[f"decoder.{module}.{found.group(2)}.{CONV_NORM[found.group(3)]}.{found.group(4)}"] = value
                continue
            found = re.match(r"psp_modules\.(\d+)\.1\.(conv|batch_norm)\.(\w+)$", local)
            if found:
                ours[f"decoder.pooling.branches.{found.group(1)}.project.{CONV_NORM[found.group(2)]}.{found.group(3)}"] \
                    = value
                continue
            if local.startswith("classifier."):
                ours[f"decoder.{local}"] = value
                continue
            ours[key] = value  # named as unmapped
        return ours

    notes = ["the FCN auxiliary head (auxiliary_head.*) exists for training only and was dropped"] \
        if config.get("use_auxiliary_head", True) else []
    return Plan("timm", "upernet", backbone.kwargs, {"decoder_channels": config.get("hidden_size", 512),
                                                     "pool_norm": True}, rename,
                ("auxiliary_head.", *(f"backbone.{prefix}" for prefix in backbone.dropped)), notes + backbone.notes)


PIXEL_DECODER = {"self_attn.sampling_offsets": "attention.offsets", "self_attn.attention_weights": "attention.attention",
                 "self_attn.value_proj": "attention.value", "self_attn.output_proj": "attention.output",
                 "self_attn_layer_norm": "norm1", "fc1": "ffn.0", "fc2": "ffn.3", "final_layer_norm": "norm2"}
MASKED_DECODER = {"cross_attn_layer_norm": "cross.{i}.norm", "cross_attn.out_proj": "cross.{i}.attention.out_proj",
                  "self_attn.out_proj": "self_attention.{i}.attention.out_proj",
                  "self_attn_layer_norm": "self_attention.{i}.norm", "fc1": "ffn.{i}.net.0", "fc2": "ffn.{i}.net.3",
                  "final_layer_norm": "ffn.{i}.norm"}
PIXEL_DECODER_SIMPLE = {"level_embed": "level_embedding", "mask_projection.weight": "mask_features.weight",
                        "mask_projection.bias": "mask_features.bias"}
TRANSFORMER_SIMPLE = {"queries_features.weight": "query_features.weight",
                      "queries_embedder.weight": "query_positions.weight", "level_embed.weight": "level_embedding.weight",
                      "decoder.layernorm.weight": "norm.weight", "decoder.layernorm.bias": "norm.bias",
                      "class_predictor.weight": "classifier.weight", "class_predictor.bias": "classifier.bias"}
MASK2FORMER_BACKBONE = "model.pixel_level_module.encoder."


def mask2former_rename(state: dict[str, torch.Tensor], backbone: BackbonePlan) -> dict[str, torch.Tensor]:
    ours = backbone.tensors(state, MASK2FORMER_BACKBONE)
    projections: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # separate q, k, v -> one in_proj
    for key, value in state.items():
        if key.startswith(MASK2FORMER_BACKBONE):
            continue
        if key.startswith("model.pixel_level_module.decoder."):
            local = key.removeprefix("model.pixel_level_module.decoder.")
            found = re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", local)
            if found and found.group(2) in PIXEL_DECODER:
                ours[f"decoder.pixel_decoder.encoder.{found.group(1)}.{PIXEL_DECODER[found.group(2)]}."
                     f"{found.group(3)}"] = value
            elif local in PIXEL_DECODER_SIMPLE:
                ours[f"decoder.pixel_decoder.{PIXEL_DECODER_SIMPLE[local]}"] = value
            elif re.match(r"input_projections\.\d+\.[01]\.(weight|bias)$", local):
                ours[f"decoder.pixel_decoder.project.{local.removeprefix('input_projections.')}"] = value
            elif re.match(r"(adapter_1|layer_1)\.[01]\.(weight|bias)$", local):
                module, rest = local.split(".", 1)
                ours[f"decoder.pixel_decoder.{'lateral' if module == 'adapter_1' else 'output'}.{rest}"] = value
            else:
                ours[key] = value
            continue
        local = key.removeprefix("model.transformer_module.")
        found = re.match(r"decoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", local)
        projection = re.match(r"decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", local)
        cross = re.match(r"decoder\.layers\.(\d+)\.cross_attn\.(in_proj_weight|in_proj_bias)$", local)
        embedder = re.match(r"decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.(weight|bias)$", local)
        if local in TRANSFORMER_SIMPLE:
            ours[f"decoder.{TRANSFORMER_SIMPLE[local]}"] = value
        elif projection:
            projections.setdefault((projection.group(1), projection.group(3)), {})[projection.group(2)] = value
        elif cross:
            ours[f"decoder.cross.{cross.group(1)}.attention.{cross.group(2)}"] = value
        elif found and found.group(2) in MASKED_DECODER:
            ours[f"decoder.{MASKED_DECODER[found.group(2)].format(i=found.group(1))}.{found.group(3)}"] = value
        elif embedder:
            ours[f"decoder.mask_embedding.{2 * int(embedder.group(1))}.{embedder.group(2)}"] = value
        else:
            ours[key] = value
    ours.update(joined_projections(projections, "decoder.self_attention.{layer}.attention.in_proj_{kind}"))
    return ours


@IMPORTERS.register("Mask2FormerForUniversalSegmentation")
def mask2former(config: dict[str, Any], path: Path) -> Plan:
    """Mask2Former (transformers' port of the reference): our ``mask2former`` on the same backbone (ResNet or Swin
    through timm). The loss's class weights (``criterion.*``) exist for training only and are dropped."""
    backbone = backbone_of(config, path, ("resnet", "swin"), "Mask2Former")
    width = config.get("hidden_dim", 256)
    require(config, path, {"feature_size": width, "mask_feature_size": width, "activation_function": "relu",
                           "pre_norm": False, "enforce_input_projection": False, "common_stride": 4,
                           "feature_strides": [4, 8, 16, 32]})
    decoder_kwargs = {"queries": config.get("num_queries", 100), "width": width,
                      "layers": config.get("decoder_layers", 10) - 1, "heads": config.get("num_attention_heads", 8),
                      "feedforward": config.get("dim_feedforward", 2048), "dropout": config.get("dropout", 0.0),
                      "pixel_layers": config.get("encoder_layers", 6),
                      "pixel_feedforward": config.get("encoder_feedforward_dim", 1024),
                      "class_weight": config.get("class_weight", 2.0), "mask_weight": config.get("mask_weight", 5.0),
                      "dice_weight": config.get("dice_weight", 5.0),
                      "no_object_weight": config.get("no_object_weight", 0.1),
                      "num_points": config.get("train_num_points", 12544),
                      "oversample": config.get("oversample_ratio", 3.0),
                      "importance": config.get("importance_sample_ratio", 0.75)}
    return Plan("timm", "mask2former", backbone.kwargs, decoder_kwargs, lambda state: mask2former_rename(state, backbone),
                ("criterion.", *(MASK2FORMER_BACKBONE + prefix for prefix in backbone.dropped)),
                ["the loss's class weights (criterion.empty_weight) exist for training only and were dropped",
                 *backbone.notes])


EOMT_LAYER = {"norm1": "norm1", "norm2": "norm2", "attention.out_proj": "attn.proj", "mlp.fc1": "mlp.fc1",
              "mlp.fc2": "mlp.fc2"}
EOMT_HEAD = {"query.weight": "queries.weight", "class_predictor.weight": "classifier.weight",
             "class_predictor.bias": "classifier.bias", "mask_head.fc1.weight": "mask_embedding.0.weight",
             "mask_head.fc1.bias": "mask_embedding.0.bias", "mask_head.fc2.weight": "mask_embedding.2.weight",
             "mask_head.fc2.bias": "mask_embedding.2.bias", "mask_head.fc3.weight": "mask_embedding.4.weight",
             "mask_head.fc3.bias": "mask_embedding.4.bias"}
EOMT_UPSCALE = {"conv1": "0", "conv2": "2", "layernorm2d": "3"}


def eomt_rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours: dict[str, torch.Tensor] = {}
    projections: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    simple = {"embeddings.cls_token": "backbone.vit.cls_token", "embeddings.register_tokens": "backbone.vit.reg_token",
              "embeddings.patch_embeddings.projection.weight": "backbone.vit.patch_embed.proj.weight",
              "embeddings.patch_embeddings.projection.bias": "backbone.vit.patch_embed.proj.bias",
              "layernorm.weight": "backbone.vit.norm.weight", "layernorm.bias": "backbone.vit.norm.bias"}
    for key, value in state.items():
        layer = re.match(r"layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        scale = re.match(r"layers\.(\d+)\.layer_scale([12])\.lambda1$", key)
        projection = re.match(r"layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$", key)
        upscale = re.match(r"upscale_block\.block\.(\d+)\.(conv1|conv2|layernorm2d)\.(weight|bias)$", key)
        if key in simple:
            ours[simple[key]] = value
        elif key == "embeddings.position_embeddings.weight":
            ours["backbone.vit.pos_embed"] = value[None]
        elif projection:
            projections.setdefault((projection.group(1), projection.group(3)), {})[projection.group(2)] = value
        elif scale:
            ours[f"backbone.vit.blocks.{scale.group(1)}.ls{scale.group(2)}.gamma"] = value
        elif layer and layer.group(2) in EOMT_LAYER:
            ours[f"backbone.vit.blocks.{layer.group(1)}.{EOMT_LAYER[layer.group(2)]}.{layer.group(3)}"] = value
        elif key in EOMT_HEAD:
            ours[f"decoder.{EOMT_HEAD[key]}"] = value
        elif upscale:
            ours[f"decoder.upscale.{upscale.group(1)}.{EOMT_UPSCALE[upscale.group(2)]}.{upscale.group(3)}"] = value
        else:
            ours[key] = value  # named as unmapped
    ours.update(joined_projections(projections, "backbone.vit.blocks.{layer}.attn.qkv.{kind}"))
    return ours


@IMPORTERS.register("EomtForUniversalSegmentation")
def eomt(config: dict[str, Any], path: Path) -> Plan:
    """EoMT (transformers' port of the reference): a DINOv2-style timm ViT (registers where the config has them, its
    patch size, width, depth and layer scale) with our ``eomt`` head on its last ``num_blocks`` blocks. transformers'
    ViT adds position embeddings for its ``image_size`` grid without resizing them, so it runs at that size only; the
    import resizes them for other sizes (timm's ``dynamic_img_size``). The annealing state (``attn_mask_probs``) and
    the loss's class weights exist for training only and are dropped; a checkpoint whose annealing has not finished
    (it still masks attention at inference) is refused, since this project's EoMT runs unmasked."""
    require(config, path, {"hidden_act": "gelu", "use_swiglu_ffn": False, "layer_norm_eps": 1e-6,
                           "num_upscale_blocks": max(1, round(math.log2(config.get("patch_size", 16) / 4)))})
    registers = config.get("num_register_tokens", 0)
    width = config.get("hidden_size", 1024)
    backbone_kwargs = {
        "model_name": "vit_small_patch14_reg4_dinov2" if registers else "vit_small_patch14_dinov2",
        "adapter": "none", "blocks": [config["num_hidden_layers"] - 1] * 4,
        "model_kwargs": {"img_size": config.get("image_size", 640), "patch_size": config.get("patch_size", 16),
                         "embed_dim": width, "depth": config["num_hidden_layers"],
                         "num_heads": config["num_attention_heads"], "mlp_ratio": config.get("mlp_ratio", 4),
                         "reg_tokens": registers, "no_embed_class": True,
                         "init_values": config.get("layerscale_value", 1.0),
                         "drop_path_rate": config.get("drop_path_rate", 0.0)}}
    decoder_kwargs = {"queries": config.get("num_queries", 200), "num_blocks": config.get("num_blocks", 4),
                      "class_weight": config.get("class_weight", 2.0), "mask_weight": config.get("mask_weight", 5.0),
                      "dice_weight": config.get("dice_weight", 5.0),
                      "no_object_weight": config.get("no_object_weight", 0.1),
                      "num_points": config.get("train_num_points", 12544),
                      "oversample": config.get("oversample_ratio", 3.0),
                      "importance": config.get("importance_sample_ratio", 0.75)}

    def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        probabilities = state.get("attn_mask_probs")
        if probabilities is not None and bool((probabilities > 0).any()):
            raise ArchitectureMismatch(f"{path}: attn_mask_probs {probabilities.tolist()}: this checkpoint's mask "
                                       f"annealing has not finished, so it masks attention at inference; this "
                                       f"project's EoMT runs unmasked, as a fully trained one does")
        return eomt_rename({k: v for k, v in state.items() if k != "attn_mask_probs"})

    return Plan("vit", "eomt", backbone_kwargs, decoder_kwargs, rename, ("criterion.",),
                ["the annealing state (attn_mask_probs) and the loss's class weights exist for training only and "
                 "were dropped"])


DPT_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}


def dpt_rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours: dict[str, torch.Tensor] = {}
    projections: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    simple = {"dpt.embeddings.cls_token": "backbone.vit.cls_token",
              "dpt.embeddings.position_embeddings": "backbone.vit.pos_embed",
              "dpt.embeddings.patch_embeddings.projection.weight": "backbone.vit.patch_embed.proj.weight",
              "dpt.embeddings.patch_embeddings.projection.bias": "backbone.vit.patch_embed.proj.bias"}
    for key, value in state.items():
        layer = re.match(r"dpt\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
        projection = re.match(r"dpt\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$",
                              key)
        readout = re.match(r"neck\.reassemble_stage\.readout_projects\.(\d)\.0\.(weight|bias)$", key)
        reassemble = re.match(r"neck\.reassemble_stage\.layers\.(\d)\.(projection|resize)\.(weight|bias)$", key)
        conv = re.match(r"neck\.convs\.(\d)\.weight$", key)
        fusion = re.match(r"neck\.fusion_stage\.layers\.(\d)\.(projection|residual_layer1|residual_layer2)\.?"
                          r"(convolution1|convolution2|batch_norm1|batch_norm2)?\.?(\w+)$", key)
        head = re.match(r"head\.head\.([0-4])\.(\w+)$", key)
        if key in simple:
            ours[simple[key]] = value
        elif projection:
            projections.setdefault((projection.group(1), projection.group(3)), {})[projection.group(2)] = value
        elif layer and layer.group(2) in DPT_LAYER:
            ours[f"backbone.vit.blocks.{layer.group(1)}.{DPT_LAYER[layer.group(2)]}.{layer.group(3)}"] = value
        elif readout:
            ours[f"decoder.readout.{readout.group(1)}.0.{readout.group(2)}"] = value
        elif reassemble:
            part = "0" if reassemble.group(2) == "projection" else "1"
            ours[f"decoder.reassemble.{reassemble.group(1)}.{part}.{reassemble.group(3)}"] = value
        elif conv:
            ours[f"decoder.convs.{conv.group(1)}.weight"] = value
        elif fusion:
            index = int(fusion.group(1))
            if fusion.group(2) == "projection":
                ours[f"decoder.fusion.{index}.project.{fusion.group(4)}"] = value
            else:
                unit = "skip" if fusion.group(2) == "residual_layer1" else "refine"
                inner = {"convolution1": "conv1", "convolution2": "conv2", "batch_norm1": "norm1",
                         "batch_norm2": "norm2"}[fusion.group(3)]
                ours[f"decoder.fusion.{index}.{unit}.{inner}.{fusion.group(4)}"] = value
        elif head and head.group(1) in "014":
            ours[f"decoder.head.{head.group(1)}.{head.group(2)}"] = value
        else:
            ours[key] = value  # named as unmapped
    ours.update(joined_projections(projections, "backbone.vit.blocks.{layer}.attn.qkv.{kind}",
                                   ("query", "key", "value")))
    return ours


@IMPORTERS.register("DPTForSemanticSegmentation")
def dpt(config: dict[str, Any], path: Path) -> Plan:
    """DPT (transformers' port of the paper's ADE20K model): a timm ViT with the config's shape and LayerNorm epsilon,
    read un-normalised at ``backbone_out_indices`` with the class token beside each patch token, and our ``dpt``
    head. transformers' ViT runs at its ``image_size``'s grid unless resized; the import resizes position embeddings as
    timm does (bicubic) where transformers uses bilinear, so other sizes agree only approximately. Dropped: the
    auxiliary head (training only), the ViT's final LayerNorm (the head never reads it) and the coarsest fusion
    block's residual unit for a finer level it never has."""
    require(config, path, {"is_hybrid": False, "readout_type": "project", "reassemble_factors": [4, 2, 1, 0.5],
                           "hidden_act": "gelu", "qkv_bias": True, "head_in_index": -1, "add_projection": False,
                           "neck_ignore_stages": []})
    if config.get("use_bias_in_fusion_residual") not in (None, not config.get("use_batch_norm_in_fusion_residual")):
        raise ArchitectureMismatch(f"{path}: use_bias_in_fusion_residual={config['use_bias_in_fusion_residual']} with "
                                   f"use_batch_norm_in_fusion_residual={config.get('use_batch_norm_in_fusion_residual')}"
                                   f" (this project's model: a bias exactly when there is no BatchNorm)")
    blocks = list(config.get("backbone_out_indices", [2, 5, 8, 11]))
    width, patch = config["hidden_size"], config.get("patch_size", 16)
    backbone_kwargs = {
        "model_name": f"vit_base_patch{patch}_224", "adapter": "none", "normalize": False, "readout": True,
        "blocks": blocks, "norm_eps": config.get("layer_norm_eps", 1e-12),
        "model_kwargs": {"img_size": config.get("image_size", 384), "patch_size": patch, "embed_dim": width,
                         "depth": config["num_hidden_layers"], "num_heads": config["num_attention_heads"],
                         "mlp_ratio": config.get("intermediate_size", 4 * width) / width}}
    decoder_kwargs = {"features": config.get("fusion_hidden_size", 256),
                      "reassemble_channels": list(config.get("neck_hidden_sizes", [96, 192, 384, 768])),
                      "readout": "project", "fusion_norm": bool(config.get("use_batch_norm_in_fusion_residual", False)),
                      "dropout": config.get("semantic_classifier_dropout", 0.1)}
    notes = ["dropped: the auxiliary head (training only), the ViT's final LayerNorm (never read by the head) and the "
             "coarsest fusion block's unused residual unit"]
    return Plan("vit", "dpt", backbone_kwargs, decoder_kwargs, dpt_rename,
                ("auxiliary_head.", "dpt.layernorm.", "neck.fusion_stage.layers.0.residual_layer1."), notes)
