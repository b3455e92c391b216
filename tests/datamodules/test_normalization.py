"""The data side normalises as the backbone's weights expect, knowing only its name, and imports no model code."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import torch

from datamodules import VOCSegmentationDataModule
from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalization, backbone_normalization
from tests.helpers import ROOT, subprocess_env


def test_the_data_package_imports_nothing_from_segmodels():
    for path in sorted((ROOT / "datamodules").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "segmodels" for n in names), f"{path.name} imports {names}"
    script = "import sys, datamodules; print(sorted(m for m in sys.modules if m.split('.')[0] == 'segmodels'))"
    result = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_a_datamodule_given_only_the_backbone_name_normalises_as_its_weights_expect(tiny_demo):
    lite = VOCSegmentationDataModule(str(tiny_demo), num_classes=4, backbone="efficientnet_lite0")
    resnet = VOCSegmentationDataModule(str(tiny_demo), num_classes=4, backbone="resnet50")
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    # EfficientNet-Lite0's TF weights want (x - 0.5) / 0.5: bytes 0 / 128 / 255 -> -1 / 0.0039 / 1
    assert torch.allclose(lite.normalize(images)[0, 0, 0], torch.tensor([-1.0, 1 / 255, 1.0]), atol=1e-6)
    assert lite.mean == (0.5, 0.5, 0.5) and resnet.mean == IMAGENET_MEAN and resnet.std == IMAGENET_STD
    expected = (torch.tensor([0.0, 128, 255]) / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert torch.allclose(resnet.normalize(images)[0, 1, 0], expected, atol=1e-6)
    # any timm name resolves through timm's pretrained config
    assert backbone_normalization("convnext_atto") == Normalization(IMAGENET_MEAN, IMAGENET_STD)


def test_statistics_cycle_for_other_channel_counts():
    cycled = Normalization((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)).for_channels(4)
    assert cycled == Normalization((1.0, 2.0, 3.0, 1.0), (4.0, 5.0, 6.0, 4.0))


def test_an_unknown_backbone_or_no_statistics_at_all_are_refused_naming_the_way_out(tiny_demo):
    with pytest.raises(KeyError, match="no model package knows a backbone named 'resnet5'.*mean=\\[...\\] and std"):
        backbone_normalization("resnet5")
    datamodule = VOCSegmentationDataModule(str(tiny_demo), num_classes=4)  # reading data needs no statistics
    assert datamodule.in_channels == 3
    with pytest.raises(ValueError, match="give backbone=<the model's backbone name>"):
        datamodule.normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
