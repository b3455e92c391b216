"""export.py: an ONNX file that takes 0-255 images of any batch and size, checked in ONNX Runtime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segmodels import SegmentationModule
from tests.helpers import ROOT, subprocess_env


@pytest.mark.parametrize("fp16", [False, True])
def test_export_py_writes_a_checked_graph_with_normalisation_and_metadata(trained_run, tiny_demo, tmp_path, fp16):
    run, trained = trained_run
    output = tmp_path / "model.onnx"
    image = tiny_demo / "JPEGImages" / "test_0001.jpg"
    result = subprocess.run(
        [sys.executable, "export.py", f"ckpt_path={trained['best_checkpoint']}", f"output={output}", f"image={image}",
         f"fp16={str(fp16).lower()}"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ONNX Runtime matches PyTorch on" in result.stdout and "max |difference|" in result.stdout
    metadata = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["class_names"]) == ["background", "circle", "square", "triangle"]
    # normalisation inside the graph: raw 0-255 pixels in, the checkpoint's logits out
    module = SegmentationModule.restore(trained["best_checkpoint"])
    from datamodules.images import read_image

    pixels = read_image(image, keep_single_channel=False)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    (logits,) = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = module(((x / 255) - torch.tensor(module.mean).view(1, 3, 1, 1)) / torch.tensor(module.std).view(1, 3, 1, 1))
    assert np.abs(logits - expected.numpy()).max() < (5e-2 if fp16 else 1e-4)


def test_export_without_a_readable_image_says_how_to_give_one(trained_run, tmp_path):
    run, trained = trained_run
    result = subprocess.run([sys.executable, "export.py", f"ckpt_path={trained['best_checkpoint']}",
                             f"output={tmp_path / 'm.onnx'}", f"image={tmp_path / 'nothing.jpg'}"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "nothing.jpg: no such file; give an image to check the export with" in result.stderr


def test_export_and_model_folders_normalise_with_the_backbones_own_statistics(tmp_path):
    """On a backbone with ImageNet's statistics (mean != std, unlike EfficientNet-Lite0's 0.5 and 0.5) and with LoRA
    adapters that change the output, the ONNX graph and a model folder give the unmerged module's predictions on
    raw pixels: a swapped mean and std, or a wrong merge, would show."""
    from datamodules.normalization import IMAGENET_MEAN, IMAGENET_STD
    from segmodels.io.onnx import export_onnx

    torch.manual_seed(0)
    module = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=3, pretrained=False,
                                backbone_kwargs={"lora_rank": 2}, decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}).eval()
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # peft starts B at zero: an unmerged and a merged model would agree anyway
    assert module.mean == IMAGENET_MEAN and module.std == IMAGENET_STD
    pixels = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = module(((x / 255) - mean) / std)
    module.save_pretrained(str(tmp_path / "folder"))
    folder = SegmentationModule.from_pretrained(str(tmp_path / "folder"))
    np.testing.assert_array_equal(folder.segment(pixels), expected.argmax(1)[0].numpy())
    export_onnx(module, tmp_path / "lora.onnx", pixels)
    session = ort.InferenceSession(str(tmp_path / "lora.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x.numpy()})
    assert np.abs(logits - expected.numpy()).max() < 1e-4
