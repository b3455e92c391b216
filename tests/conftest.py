from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import segmodels.resolvers  # noqa: F401  (as train.py registers them)
from datamodules import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_SPLITS = {"train": 8, "val": 4, "test": 4}

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """The demo dataset at 48 x 48 with 8/4/4 images: real files in VOC layout, cheap to train on."""
    return make_demo_dataset(tmp_path_factory.mktemp("data") / "demo", splits=TINY_SPLITS, size=48)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache and a network that refuses at once, whatever the machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def compose_train(overrides: list[str]) -> DictConfig:
    """The real conf/ tree, composed as `python train.py <overrides>` would compose it."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def tiny_overrides(data: Path, output: Path, *extra: str) -> list[str]:
    return [
        f"dataset.root={data}",
        f"output_dir={output}",
        "dataset.crop_size=48",
        "dataset.batch_size=4",
        "dataset.val_batch_size=4",
        "dataset.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
