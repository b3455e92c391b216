"""What several test files share: composing the real configs, and running the entry points."""
from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from segmodels.cli.config_options import register_options

register_options()  # as train.py does before Hydra composes

ROOT = Path(__file__).resolve().parents[2]


def compose_train(overrides: list[str]) -> DictConfig:
    """The real conf/ tree, composed as `python train.py <overrides>` would compose it."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def tiny_overrides(data: Path, output: Path, *extra: str) -> list[str]:
    """``debug=fast`` (conf/debug/fast.yaml) on a tiny dataset, then the test's own ``extra`` overrides."""
    return ["debug=fast", f"dataset.root={data}", f"output_dir={output}", *extra]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def saved_checkpoint(module, path: Path) -> Path:
    """``module`` written as a Lightning checkpoint at ``path``, as train.py's are, without training it."""
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


SMALL_TIMM = "convnext_atto"  # the generic ``timm`` entry is tested with timm's smallest ConvNeXt
GENERIC = {"timm": SMALL_TIMM, "vit": "vit_small_patch16_224",  # entries whose pyramid depends on a model name
           "swin": "swin_tiny_patch4_window7_224"}


def concrete(name: str) -> str:
    """A registered name that builds a network of its own: generic entries (timm, vit) get a small model."""
    return GENERIC.get(name, name)


def backbone_families() -> list[str]:
    """One registered backbone per implementation (the narrowest by declared channels), so a new family in
    segmodels/models/backbones/ is tested by every decoder without a list to edit; ``timm`` stands for any timm name."""
    from segmodels import BACKBONES

    chosen: dict[object, str] = {}
    for name in BACKBONES.names():
        factory = BACKBONES.get(name)
        family = getattr(factory, "func", factory)
        info = BACKBONES.info(name)
        if info is None:  # a generic entry whose pyramid depends on its model name (timm, vit)
            chosen[family] = GENERIC[name]  # a KeyError here: give the new generic entry a small model in GENERIC
            continue
        current = chosen.get(family)
        if current is None or sum(info.channels) < sum(BACKBONES.info(current).channels):
            chosen[family] = name
    return sorted(chosen.values())


def assert_scores_match_confusion(metrics: dict) -> None:
    """A run's test mIoU and mean Dice recomputed by hand from the confusion matrix it saved (rows: truth,
    columns: prediction; a class with no pixel in truth or prediction has no score): a wrongly aggregated or
    mislabelled score differs, where a range check would pass."""
    confusion = metrics["test/confusion"]
    ious, dices = [], []
    for c, row in enumerate(confusion):
        tp, fn, fp = row[c], sum(row) - row[c], sum(r[c] for r in confusion) - row[c]
        if tp + fn + fp:
            ious.append(tp / (tp + fn + fp))
            dices.append(2 * tp / (2 * tp + fn + fp))
    assert sum(sum(row) for row in confusion) > 0
    assert abs(metrics["test/mIoU"] - sum(ious) / len(ious)) < 1e-6
    assert abs(metrics["test/mean_dice"] - sum(dices) / len(dices)) < 1e-6
