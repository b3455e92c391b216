from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from datamodules import make_demo_dataset

TINY_SPLITS = {"train": 8, "val": 4, "test": 4}

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def scratch_tmpdir(tmp_path_factory) -> Path:
    """Every temporary file of the tests and their subprocesses under pytest's own folder, not the system's: wandb's
    media folders (every process that imports timm.utils makes two), torch.compile's cache; a process a test kills
    cannot clean its own up."""
    folder = tmp_path_factory.mktemp("tmpdir")
    variables = {"TMPDIR": str(folder), "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor")}
    previous = {name: os.environ.get(name) for name in variables}, tempfile.tempdir
    os.environ.update(variables)
    tempfile.tempdir = str(folder)
    yield folder
    for name, value in previous[0].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = previous[1]


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


@pytest.fixture(scope="session")
def trained_run(tiny_demo, tmp_path_factory) -> tuple[Path, dict]:
    """One short train.py run on the tiny demo data (two epochs of two batches), shared by the tests of what
    comes after training: evaluate.py, export.py, the model folder. Returns the run folder and its metrics."""
    from segmodels.cli.train import train
    from tests.helpers import compose_train, tiny_overrides

    output = tmp_path_factory.mktemp("trained_run")
    metrics = train(compose_train(tiny_overrides(tiny_demo, output, "trainer.max_epochs=2")))
    return output, metrics
