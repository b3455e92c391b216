"""The model folder train.py writes: safetensors + config.json + model card, loadable without Hydra or data."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from segmodels import SegmentationModule
from tests.helpers import subprocess_env


def test_train_py_writes_a_model_folder_that_loads_without_hydra_to_the_checkpoints_logits(trained_run, tmp_path):
    run, trained = trained_run
    folder = run / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["class_names"] == ["background", "circle", "square", "triangle"]
    assert config["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and config["palette"][1] == [128, 0, 0]
    card = (folder / "README.md").read_text()
    assert "# efficientnet_lite0 + unet" in card and f"| mIoU | {100 * trained['test/mIoU']:.2f}% |" in card
    assert "## Recipe" in card

    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        expected = SegmentationModule.restore(trained["best_checkpoint"])(x)
    torch.save(x, tmp_path / "x.pt")
    script = (  # a fresh interpreter in which Hydra cannot be imported, away from the training data
        "import sys; sys.modules['hydra'] = None\n"
        "import torch\nfrom segmodels import SegmentationModule\n"
        f"model = SegmentationModule.from_pretrained({str(folder)!r})\n"
        f"with torch.no_grad(): torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


def test_save_and_load_round_trip_and_a_folder_that_is_not_one(tmp_path):
    module = SegmentationModule(backbone="resnet18", decoder="fpn", num_classes=3, pretrained=False,
                                backbone_kwargs={"lora_rank": 2}, decoder_kwargs={"pyramid_channels": 16})
    module.save_pretrained(str(tmp_path / "m"))
    loaded = SegmentationModule.from_pretrained(str(tmp_path / "m"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in module.state_dict().items())
    with pytest.raises(FileNotFoundError, match="is not a saved model folder: config.json is missing"):
        SegmentationModule.from_pretrained(str(tmp_path))
