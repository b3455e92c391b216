"""What a run prints: the composed config once, its own messages, and a closing summary of where things went."""
from __future__ import annotations

import logging
import os
import shlex
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich import print as rich_print
from rich.tree import Tree


def quiet_third_party() -> None:
    """Silence what is not ours and says nothing to act on: Lightning's tips (cloud loggers, litmodels,
    the model summary's FLOPs count, worker counts) and deprecation warnings from libraries."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*predefined.*")
    # mid-epoch resume is exact through the ExactResume callback (sampler position, RNG states), not the loader
    warnings.filterwarnings("ignore", message=".*ended before the epoch ended and your dataloader is not resumable.*")
    os.environ.setdefault("POSSIBLE_USER_WARNINGS", "off")  # Lightning's 'consider installing ...' tips
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.callbacks.model_summary"):
        logging.getLogger(name).setLevel(logging.WARNING)


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """The composed config as a tree, top-level groups first (as lightning-hydra-template prints it)."""
    tree = Tree("config", guide_style="dim")
    scalars = {}
    for key, value in cfg.items():
        if OmegaConf.is_config(value):
            tree.add(f"[bold]{key}[/bold]").add(OmegaConf.to_yaml(value, resolve=True).rstrip() or "{}")
        else:
            scalars[key] = value
    tree.add("[bold]run[/bold]").add(OmegaConf.to_yaml(OmegaConf.create(scalars)).rstrip())
    rich_print(tree)


@rank_zero_only
def print_summary(output_dir: Path, metrics: dict[str, Any], monitor: str) -> None:
    """Where the run went and how to go on: run folder, best checkpoint, scores, next commands."""
    best = metrics.get("best_checkpoint")
    lines = ["", f"run folder       {output_dir}"]
    if best:
        lines.append(f"best checkpoint  {best}")
    if f"best/{monitor}" in metrics:
        lines.append(f"best {monitor:<10}  {100 * metrics[f'best/{monitor}']:.2f}%")
    if "test/mIoU" in metrics:
        split = f" on {metrics['test_split']}" if metrics.get("test_split") else ""
        lines.append(f"test mIoU        {100 * metrics['test/mIoU']:.2f}%{split}  (per class: the table above)")
    if metrics.get("test_note"):
        lines.append(f"note             {metrics['test_note']}")
    lines.append(f"metrics          {output_dir / 'metrics.json'}")
    lines.append(f"model folder     {output_dir / 'model'}  (SegmentationModule.from_pretrained)")
    lines.append("go on with")
    if (output_dir / "tensorboard").is_dir():  # logger=tensorboard (the default)
        lines.append(f"  tensorboard --logdir {shlex.quote(str(output_dir / 'tensorboard'))}")
    if best:
        lines.append(f"  python predict.py ckpt_path={shlex.quote(str(best))} input=<image or folder> output=predictions")
        lines.append(f"  python evaluate.py ckpt_path={shlex.quote(str(best))} scales=[0.5,0.75,1.0,1.25,1.5,1.75] flip=true")
    print("\n".join(lines))


def print_evaluation(metrics: dict[str, Any], output_dir: str | Path) -> None:
    """The protocol, the headline scores and where the files are."""
    protocol = metrics["protocol"]
    output_dir = Path(output_dir)
    lines = [
        "",
        f"{metrics['checkpoint']} on {metrics['split']} ({metrics['images']} images of {metrics['dataset']})",
        f"protocol         scales {protocol['scales']}, flip {protocol['flip']}, tile {protocol['tile']}"
        + (f", stride {protocol['stride']}" if protocol.get("stride") else "")
        + (f", blend {protocol['blend']}" if protocol.get("blend") else ""),
        f"mIoU             {100 * metrics['mIoU']:.2f}%   pixel accuracy {100 * metrics['pixel_accuracy']:.2f}%",
        f"boundary IoU     {100 * metrics['mean_boundary_iou']:.2f}%   (band {protocol['boundary_ratio']:g} of the diagonal)",
        f"ECE              {100 * metrics['ece']:.2f}%   ({protocol['calibration_bins']} bins)",
        f"time             {metrics['seconds_per_image']:.3f} s per image",
        f"files            {output_dir}/ (metrics.json, per_image.csv, worst.png, reliability.png, confusion_matrix.*, iou.png)",
    ]
    print("\n".join(lines))
