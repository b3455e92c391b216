"""A small synthetic dataset in PASCAL VOC layout, generated on first use.

Each 64 x 64 image (by default) shows one to three shapes (circle, square, triangle) in random colours on a
noisy, shaded background. The class depends on the shape alone, never on the colour, so a model
must learn shape to score well; chance-level mIoU is about 25%. Masks are palette PNGs with a
one-pixel 255 (ignore) band around each shape, as VOC's masks have.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .datamodule import VOCSegmentationDataModule
from .palette import voc_palette

DEMO_CLASSES = ["background", "circle", "square", "triangle"]
DEMO_SPLITS = {"train": 192, "val": 48, "test": 48}


def _draw_shape(rng: np.random.Generator, image: ImageDraw.ImageDraw, mask: ImageDraw.ImageDraw, size: int) -> None:
    label = int(rng.integers(1, len(DEMO_CLASSES)))
    radius = int(rng.integers(size // 10, size // 4))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, size=2))
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    if label == 1:
        image.ellipse(box, fill=colour)
        mask.ellipse(box, fill=label, outline=255)
    elif label == 2:
        image.rectangle(box, fill=colour)
        mask.rectangle(box, fill=label, outline=255)
    else:
        corners = [(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)]
        image.polygon(corners, fill=colour)
        mask.polygon(corners, fill=label, outline=255)


def _sample(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    ramp = np.linspace(0, 1, size)[None, :, None] * rng.uniform(-80, 80, size=3)
    base = rng.uniform(60, 200, size=3) + ramp + rng.normal(0, 12, size=(size, size, 3))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    mask = Image.new("P", (size, size), 0)
    mask.putpalette(voc_palette().tobytes())
    draw_image, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        _draw_shape(rng, draw_image, draw_mask, size)
    return image, mask


def make_demo_dataset(root: str | Path, splits: dict[str, int] | None = None, size: int = 64, seed: int = 0) -> Path:
    """Write the demo dataset to ``root`` (deterministic for a given seed); return ``root``.

    Written to a temporary folder and renamed into place, so concurrent jobs of a sweep never see
    a half-written dataset.
    """
    root = Path(root)
    splits = splits or DEMO_SPLITS
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (staging / folder).mkdir(parents=True)
        for split, count in splits.items():
            ids = [f"{split}_{i:04d}" for i in range(count)]
            for image_id in ids:
                image, mask = _sample(rng, size)
                image.save(staging / "JPEGImages" / f"{image_id}.jpg", quality=95)
                mask.save(staging / "SegmentationClass" / f"{image_id}.png")
            (staging / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        (staging / "class_names.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
        try:
            os.replace(staging, root)
        except OSError:
            if not (root / "ImageSets/Segmentation/train.txt").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


class DemoSegmentationDataModule(VOCSegmentationDataModule):
    """The VOC datamodule on the demo dataset, generating it under ``root`` if it is not there."""

    def __init__(self, root: str, seed: int = 0, image_size: int = 64, **kwargs) -> None:
        # the defaults of conf/dataset/demo.yaml, so a notebook's DemoSegmentationDataModule(root) trains as train.py
        kwargs.setdefault("num_classes", len(DEMO_CLASSES))
        kwargs.setdefault("class_names", DEMO_CLASSES)
        kwargs.setdefault("crop_size", image_size)
        kwargs.setdefault("scale_range", (0.75, 1.25))
        kwargs.setdefault("val_batch_size", 16)
        kwargs.setdefault("num_workers", 2)
        super().__init__(root, **kwargs)
        self.seed, self.image_size = seed, image_size

    def prepare_data(self) -> None:
        if not (self.root / "ImageSets/Segmentation/train.txt").is_file():
            make_demo_dataset(self.root, size=self.image_size, seed=self.seed)
