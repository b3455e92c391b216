"""``export.py``'s work: the checkpoint, the real image its export is checked on, and the ONNX file
(``segmodels.io.onnx`` writes and checks it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.images import read_image
from segmodels.io.onnx import ImageToLogits, export_onnx
from segmodels.training.segmentation_module import SegmentationModule

from .evaluate import evaluation_datamodule

FORMATS = ("onnx",)
__all__ = ["FORMATS", "ImageToLogits", "check_image", "export", "export_onnx"]


def export(ckpt_path: str, output: str, image: str | None = None, format: str = "onnx", opset: int | None = None,
           fp16: bool = False, trust_checkpoint: bool = False) -> str:
    """Write ``ckpt_path``'s model to ``output`` and return the line that says what was checked."""
    if format not in FORMATS:
        raise SystemExit(f"format={format}: choose one of {', '.join(FORMATS)}")
    module = SegmentationModule.restore(ckpt_path, trust=trust_checkpoint)
    array, source = check_image(module, image, trust_checkpoint)
    difference = export_onnx(module, output, array, opset=opset, fp16=fp16)
    return (f"wrote {output} (input 'image': float32 N x {module.hparams.in_channels} x H x W, 0-255; output "
            f"'logits'); ONNX Runtime matches PyTorch on {source} {array.shape[1]}x{array.shape[0]}: max |difference| "
            f"{difference:.2e}")


def check_image(module: SegmentationModule, image: str | None, trust: bool = False) -> tuple[np.ndarray, str]:
    """The real image the export is checked on: ``image``, or the first test (else val) image of the dataset the
    checkpoint was trained on."""
    if image:
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image={path}: no such file; give an image to check the export with")
        return read_image(path, keep_single_channel=module.hparams.in_channels == 1), str(path)
    try:
        data = evaluation_datamodule(module, None, "", trust)
        split = next(role for role in ("test", "val") if data.splits.get(role))
        dataset = data.dataset(split)
        return dataset.read(0)[0], str(dataset.images[0][0])
    except (OSError, ValueError, StopIteration) as error:
        raise FileNotFoundError(f"no image to check the export with: the checkpoint's dataset is not readable here "
                                f"({error}); give one with image=<path to an image>") from error
