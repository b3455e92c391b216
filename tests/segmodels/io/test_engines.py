"""Inference engines: ONNX Runtime (and torch.compile) give PyTorch's probabilities under every test-time option, and
the ONNX graph is written once, beside the checkpoint, then reused."""
from __future__ import annotations

import logging

import pytest
import torch

from segmodels import SegmentationModule
from segmodels.io.engines import inference_engine
from segmodels.models.inference import predict_probabilities
from tests.helpers import saved_checkpoint


def small_module(seed: int = 0) -> SegmentationModule:
    torch.manual_seed(seed)
    return SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=3, pretrained=False,
                              decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}).eval()


OPTIONS = [{}, {"flip": True, "scales": [0.75, 1.0]},
           {"tile": [32, 48], "stride": [20, 30], "window_batch": 3, "blend": "gaussian"}]


def test_onnxruntime_gives_torchs_probabilities_and_its_graph_is_written_once_then_reused(tmp_path, caplog):
    module = small_module()
    checkpoint = saved_checkpoint(module, tmp_path / "best.ckpt")
    with caplog.at_level(logging.INFO, logger="segmodels.io.engines"):
        runner, name = inference_engine(module, "onnxruntime", checkpoint)
    graphs = list((tmp_path / "onnx").glob("*.onnx"))
    assert name == "onnxruntime" and len(graphs) == 1 and "wrote" in caplog.text
    x = torch.randn(2, 3, 67, 93)
    for options in OPTIONS:
        expected = predict_probabilities(module.model, x, **options)
        assert (predict_probabilities(runner, x, **options) - expected).abs().max() < 1e-4, options

    caplog.clear()
    stamp = graphs[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="segmodels.io.engines"):
        inference_engine(module, "auto", checkpoint)
    assert "reusing" in caplog.text and graphs[0].stat().st_mtime_ns == stamp
    other = small_module(seed=1)  # other weights: another graph, never the stale one
    runner, _ = inference_engine(other, "onnxruntime", checkpoint)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    assert (runner(x).softmax(1) - other.model(x).softmax(1)).abs().max() < 1e-4


def test_a_model_only_torch_export_writes_runs_on_onnxruntime_and_an_inexact_graph_is_refused(tmp_path, caplog):
    """A ViT (antialiased position-embedding resizing: torch.export's exporter) at a size it was not exported at; a
    UperNet's pyramid pooling of run-time sizes, which the TorchScript exporter cannot write, goes to torch.export
    too: exact, or refused naming the way out (here ONNX Runtime's pooling differs by about 7e-4), never torch's
    exporter error."""
    torch.manual_seed(0)
    vit = SegmentationModule(backbone="vit_small_patch16_224", decoder="linear", num_classes=3, pretrained=False,
                             backbone_kwargs={"depth": 2, "adapter": "none"}).eval()
    with caplog.at_level(logging.INFO, logger="segmodels.io.engines"):
        runner, name = inference_engine(vit, "onnxruntime", tmp_path / "vit.ckpt")
    assert name == "onnxruntime" and "dynamo exporter" in caplog.text
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        assert (runner(x).softmax(1) - vit.model(x).softmax(1)).abs().max() < 1e-4
    upernet = SegmentationModule(backbone="resnet18", decoder="upernet", num_classes=3, pretrained=False,
                                 decoder_kwargs={"decoder_channels": 16}).eval()
    try:
        runner, _ = inference_engine(upernet, "onnxruntime", tmp_path / "upernet.ckpt")
    except RuntimeError as error:
        assert "ONNX Runtime's probabilities differ" in str(error) and "use engine=torch" in str(error)
    else:
        with torch.no_grad():
            assert (runner(x).softmax(1) - upernet.model(x).softmax(1)).abs().max() < 1e-4


def test_an_engine_or_provider_that_does_not_exist_is_refused_by_name(tmp_path):
    module = small_module()
    with pytest.raises(KeyError, match="unknown engine 'onnx'; choose one of: compile, onnxruntime, torch"):
        inference_engine(module, "onnx", tmp_path / "m.ckpt")
    with pytest.raises(ValueError, match="TensorrtExecutionProvider is not in this onnxruntime.*onnxruntime-gpu"):
        inference_engine(module, "onnxruntime", tmp_path / "m.ckpt", providers=["TensorrtExecutionProvider"])
