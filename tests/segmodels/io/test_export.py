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
