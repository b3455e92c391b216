"""A trained model as a self-describing folder (the segmentation_models_pytorch / Hugging Face convention):
``model.safetensors``, ``config.json`` (plain hyper-parameters, preprocessing, class names and palette) and a
``README.md`` model card. Reading it back needs neither Hydra nor the training data nor a download."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from datamodules.palette import voc_palette

from .checkpoint_reader import portable_hyperparameters

FORMAT = "segmodels-pretrained/1"


def save_pretrained(model: nn.Module, hparams: dict[str, Any], class_names: list[str], folder: str | Path,
                    metrics: dict[str, Any] | None = None, recipe: str | None = None,
                    provenance: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a ``SegmentationModel``: its ``mean``, ``std`` and backbone's ``pad_multiple`` go into the
    preprocessing record) with the hyper-parameters that rebuild it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # handles tied tensors
    hparams = portable_hyperparameters(json.loads(json.dumps(dict(hparams), default=list)))
    config = {
        "format": FORMAT,
        "hyper_parameters": hparams,
        "preprocessing": {
            "in_channels": hparams["in_channels"], "mean": list(model.mean), "std": list(model.std),
            "input": "RGB (or the training image channels), uint8 scaled to [0, 1], then (x - mean) / std, NCHW",
            "pad_multiple": model.backbone.pad_multiple,
        },
        "class_names": list(class_names),
        "palette": voc_palette()[: hparams["num_classes"]].tolist(),
        "metrics": metrics or {},
        "provenance": provenance or {},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "README.md").write_text(model_card(config, recipe))
    return folder


def source_section(source: dict[str, Any], dataset: dict[str, Any]) -> list[str]:
    """What an imported model came from: its architecture, name, licence, label convention and published figure."""
    published = source.get("published")
    lines = ["", "## Source", "",
             f"- imported from: `{source.get('name') or source.get('folder')}` ({source.get('architecture')}, "
             f"transformers {source.get('transformers_version')})",
             f"- licence: {source.get('licence') or 'not stated in the source; see its model card'}",
             f"- labels: reduce_zero_label={dataset.get('reduce_zero_label')} (label 0 ignored, the rest moved down by one, "
             f"as ADE20K's published models are trained)"]
    if published:
        lines.append(f"- published: {published['mIoU']} mIoU on {published['dataset']}, {published['protocol']} "
                     f"({published['source']})")
    lines += [f"- {note}" for note in source.get("notes") or []]
    return lines


def read_pretrained(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """The hyper-parameters a model folder was saved with and the path of its weights, or an error naming the
    file that is missing or wrong."""
    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved model folder: {path.name} is missing; give the folder "
                                    f"SegmentationModule.save_pretrained (or train.py, as <run>/model) wrote")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}); save the model folder again") from error
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: format {config.get('format')!r}, expected {FORMAT!r}; save it again with "
                         f"this version's SegmentationModule.save_pretrained")
    return config["hyper_parameters"], weights


def read_provenance(folder: str | Path) -> dict[str, Any]:
    """The provenance record a model folder's config.json carries (empty for an older folder)."""
    return json.loads((Path(folder) / "config.json").read_text()).get("provenance") or {}


def weight_names(weights: str | Path) -> list[str]:
    """The tensor names a ``model.safetensors`` holds, read from its header (no tensor is loaded)."""
    with safe_open(str(weights), "pt") as file:
        return list(file.keys())


def load_weights(model: nn.Module, weights: str | Path, map_location: str | torch.device = "cpu") -> None:
    """Copy a folder's ``model.safetensors`` into ``model`` (safetensors: reading it runs no code)."""
    load_model(model, str(weights), device=str(map_location))


def model_card(config: dict[str, Any], recipe: str | None) -> str:
    hparams, metrics = config["hyper_parameters"], config.get("metrics") or {}
    lines = [
        f"# {hparams['backbone']} + {hparams['decoder']} (segmodels)",
        "",
        f"Semantic segmentation into {hparams['num_classes']} classes: {', '.join(config['class_names'])}.",
        "",
        "## Use",
        "",
        "```python",
        "from segmodels import SegmentationModule",
        "model = SegmentationModule.from_pretrained('<this folder>')",
        "mask = model.segment(image)  # (H, W) class indices for an HxWxC uint8 array or a PIL image",
        "```",
        "",
        "## Model",
        "",
        f"- backbone: `{hparams['backbone']}` {hparams.get('backbone_kwargs') or ''}",
        f"- decoder: `{hparams['decoder']}` {hparams.get('decoder_kwargs') or ''}",
        f"- input: {config['preprocessing']['in_channels']} channels, mean {config['preprocessing']['mean']}, "
        f"std {config['preprocessing']['std']} (after scaling to [0, 1])",
        f"- optimiser: {hparams.get('optimizer')}; schedule: {hparams.get('scheduler')}; loss: {hparams.get('loss')}",
    ]
    if metrics:
        lines += ["", "## Results", "", f"Protocol: {metrics.get('protocol', 'single scale, whole images')} on "
                  f"{metrics.get('split', 'the test split')} of {metrics.get('dataset', 'the training dataset')}"
                  + (" (quoted from the source, not measured here)." if metrics.get("quoted") else "."), "",
                  "| score | value |", "| --- | --- |"]
        if metrics.get("test_note"):
            lines[-2:-2] = [f"Note: {metrics['test_note']}.", ""]
        for name in ("mIoU", "pixel_accuracy", "mean_accuracy", "mean_dice", "mean_boundary_iou", "ece"):
            if name in metrics:
                lines.append(f"| {name} | {100 * metrics[name]:.2f}% |")
        if metrics.get("iou"):
            lines += ["", "| class | IoU |", "| --- | --- |"]
            lines += [f"| {name} | {'n/a' if v != v else f'{100 * v:.2f}%'} |" for name, v in metrics["iou"].items()]
    provenance = config.get("provenance") or {}
    if provenance.get("imported_from"):
        lines += source_section(provenance["imported_from"], provenance.get("dataset_settings") or {})
    elif provenance:
        git, data = provenance.get("git") or {}, provenance.get("data") or {}
        commit = git.get("commit") or "not a git checkout"
        lines += ["", "## Provenance", "",
                  f"- code: segmodels commit `{commit}`{' with uncommitted changes' if git.get('dirty') else ''}",
                  f"- command: `{provenance.get('command')}`", f"- seed: {provenance.get('seed')}",
                  f"- device: {provenance.get('device')}",
                  f"- CPU: {(provenance.get('cpu') or {}).get('model')}, torch kernels "
                  f"{(provenance.get('cpu') or {}).get('capability')}",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in (provenance.get("versions") or {}).items()),
                  "- data: " + "; ".join(f"{split} {info['images']} images (ids sha256 {info['ids_sha256'][:12]}, "
                                         f"{info['bytes']} bytes)" for split, info in data.items())]
    if recipe:
        lines += ["", "## Recipe (the composed training config)", "", "```yaml", recipe.rstrip(), "```"]
    return "\n".join(lines) + "\n"
