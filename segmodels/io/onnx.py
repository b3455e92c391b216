"""ONNX export of a checkpoint, checked against ONNX Runtime before it reports success.

The graph takes ``image``: float32 (N, C, H, W) with values 0-255 (RGB, or the training channels), any batch
and size, and returns ``logits`` (N, classes, H, W); the normalisation is inside the graph (``ImageToLogits``)
and also stated in the file's metadata, with the class names. A LoRA model is merged first (``merge_lora``). ``fp16``
converts the weights and activations to float16 after export (inputs and outputs stay float32).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segmodels.models.lora import merge_lora


class ImageToLogits(nn.Module):
    """0-255 images -> logits: the scaling and normalisation the data side does, then the model."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model((image - self.mean) / self.std)


def write_graph(wrapper: nn.Module, trace: torch.Tensor, output: Path, opset: int | None, dynamo: bool = True) -> str:
    """The TorchScript exporter (seconds for a CNN), or ``torch.export`` where it lacks an operator (a ViT's
    antialiased bicubic resizing of position embeddings) and ``dynamo`` allows: the dynamo exporter handles those but
    spends minutes on the symbolic shapes of a CNN's padding arithmetic. Returns which one wrote the file."""
    axes = {0: "batch", 2: "height", 3: "width"}
    names = {"input_names": ["image"], "output_names": ["logits"]}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the result is checked in ONNX Runtime
            torch.onnx.export(wrapper, (trace,), str(output), dynamic_axes={"image": axes, "logits": axes}, dynamo=False,
                              **names, **({"opset_version": opset} if opset else {}))
        return "torchscript"
    except (torch.onnx.errors.UnsupportedOperatorError, torch.onnx.errors.SymbolicValueError):
        if not dynamo:
            raise
        torch.onnx.export(wrapper, (trace,), str(output), dynamic_shapes=(axes,), dynamo=True,  # by position: any name
                          external_data=False, **names, **({"opset_version": opset} if opset else {}))
        return "dynamo"


def export_onnx(module: nn.Module, output: str | Path, example: np.ndarray, opset: int | None = None,
                fp16: bool = False) -> float:
    """Write ``module`` (a ``SegmentationModule``: its ``model``, ``mean``/``std``, ``class_names`` and ``hparams``)
    to ``output`` and return the largest absolute difference between ONNX Runtime's and PyTorch's logits on
    ``example`` (an HxWxC uint8 image). Raises if ONNX Runtime disagrees."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError(f"export.py needs {error.name}: pip install -e '.[export]' (onnx, onnxruntime, onnxscript)") from error

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = merge_lora(module.model).eval()
    wrapper = ImageToLogits(model, module.mean, module.std).eval()
    channels = module.hparams.in_channels
    x = torch.from_numpy(np.ascontiguousarray(example)).permute(2, 0, 1)[None].float()
    trace = torch.rand(2, channels, max(64, x.shape[-2] // 2 * 2), max(64, x.shape[-1] // 2 * 2)) * 255  # batch 2: not 1
    exporter = write_graph(wrapper, trace, output, opset)
    graph = onnx.load(str(output))
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        graph = convert_float_to_float16(graph, keep_io_types=True)
    metadata = {"exporter": exporter, "class_names": json.dumps(module.class_names), "mean": json.dumps(list(module.mean)),
                "std": json.dumps(list(module.std)), "input": "float32 NCHW, values 0-255; normalised inside the graph",
                "backbone": module.hparams.backbone, "decoder": module.hparams.decoder}
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(output))
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    # the image itself, then a batch of two at another, odd size: the graph must take any batch and size
    other = torch.nn.functional.interpolate(x, size=(x.shape[-2] + 17, x.shape[-1] + 9), mode="bilinear").repeat(2, 1, 1, 1)
    difference = 0.0
    for images in (x, other):
        (actual,) = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            expected = wrapper(images).numpy()
        if actual.shape != expected.shape:
            raise RuntimeError(f"{output}: ONNX Runtime returned logits of shape {actual.shape} for input "
                               f"{tuple(images.shape)}, PyTorch {expected.shape}; the file is not usable")
        gap = float(np.abs(actual - expected).max())
        agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
        tolerance = 5e-2 if fp16 else 1e-3
        if gap > tolerance * max(1.0, float(np.abs(expected).max())) or agreement < (0.99 if fp16 else 0.999):
            raise RuntimeError(f"{output}: ONNX Runtime's logits differ from PyTorch's by up to {gap:.3g} (classes "
                               f"agree on {100 * agreement:.2f}% of pixels) for input {tuple(images.shape)}; the file "
                               f"is kept for inspection but is not trustworthy")
        difference = max(difference, gap)
    return difference
