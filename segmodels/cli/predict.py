"""Image files in, palette masks and overlays out: the work behind ``predict.py``."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.images import UnreadableImage, read_image
from datamodules.palette import palette_of
from datamodules.progress import progress
from segmodels.evaluation.pictures import blend
from segmodels.training.segmentation_module import SegmentationModule

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def overlay(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image with each class's colour blended in (background, class 0, left as it is)."""
    rgb = image if image.ndim == 3 and image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    pictures = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    if image.dtype == np.uint8:
        pictures = pictures / 255
    else:  # 16-bit or float data: stretched between its own 0.5 and 99.5 percentiles, for the eye only
        low, high = np.percentile(rgb, [0.5, 99.5])
        pictures = ((pictures - float(low)) / max(float(high - low), 1e-12)).clamp(0, 1)
    blended = blend(pictures, torch.from_numpy(mask)[None])[0].permute(1, 2, 0)
    return Image.fromarray((blended * 255).round().clamp(0, 255).byte().numpy())


def predict_folder(ckpt_path: str, input: str, output: str, flip: bool = False, tile=None, overlap: float = 0.25,
                   device: str = "auto", trust_checkpoint: bool = False, stride=None, window_batch: int = 4,
                   blend: str = "uniform") -> list[Path]:
    source, target = Path(input), Path(output)
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist; give an image file or a folder of images")
    entries = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        log.info("skipped %d files that are not images (%s): %s", len(others), ", ".join(sorted(IMAGE_SUFFIXES)),
                 ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = SegmentationModule.restore(ckpt_path, map_location=device, trust=trust_checkpoint)
    target.mkdir(parents=True, exist_ok=True)
    palette = palette_of((module.datamodule_config or {}).get("palette") or "voc").tobytes()  # the dataset's colours
    written = []
    broken = []
    for path in progress(files, desc="predict", unit="image"):
        try:
            image = read_image(path, keep_single_channel=module.hparams.in_channels != 3)
        except UnreadableImage as error:  # one bad photo should not stop a folder: skip it, say so at the end
            broken.append(f"{path.name} ({error.reason[:100]})")
            continue
        image = image[..., 0] if image.shape[-1] == 1 else image
        mask = module.segment(image, flip=flip, tile=tile, overlap=overlap, stride=stride, window_batch=window_batch,
                              blend=blend)
        png = Image.fromarray(mask)  # mode L; a palette turns it into P with the indices unchanged
        png.putpalette(palette)
        png.save(target / f"{path.stem}.png")
        overlay(image if image.ndim == 3 else image[..., None], mask).save(target / f"{path.stem}_overlay.jpg", quality=90)
        written.append(target / f"{path.stem}.png")
    if broken:
        log.warning("skipped %d images that cannot be decoded: %s", len(broken), "; ".join(broken))
    return written
