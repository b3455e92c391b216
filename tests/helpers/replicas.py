"""Miniature replicas of the published dataset layouts: a few small images with the real folder structure, file-name
patterns and label values, so the layouts are tested without the data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.layouts import CITYSCAPES_TRAIN_IDS


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)


def ade20k(root: Path, per_split: int = 3, size: int = 40) -> Path:
    """ADEChallengeData2016: labels 0 ("other") .. 150, ADE_<split>_<8 digits>."""
    rng = np.random.default_rng(0)
    for split, stem in (("training", "train"), ("validation", "val")):
        for i in range(1, per_split + 1):
            name = f"ADE_{stem}_{i:08d}"
            _write(root / "images" / split / f"{name}.jpg", _image(rng, size))
            mask = rng.choice([0, 1, 2, 150], (size, size + 8)).astype(np.uint8)
            _write(root / "annotations" / split / f"{name}.png", mask)
    return root


def cityscapes(root: Path, per_split: int = 2, size: int = 40, train_ids: bool = True) -> Path:
    """leftImg8bit/gtFine with a city folder per split; label ids and (``train_ids``) the prepared train ids."""
    rng = np.random.default_rng(1)
    ids = np.array([0, 7, 8, 26, 33, 4], dtype=np.uint8)  # unlabeled, road, sidewalk, car, bicycle, static
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        for i in range(per_split):
            name = f"{city}_{i:06d}_000019"
            _write(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _image(rng, size))
            label_ids = rng.choice(ids, (size, size + 8)).astype(np.uint8)
            _write(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids)
            if train_ids:
                trained = np.vectorize(lambda v: CITYSCAPES_TRAIN_IDS.get(int(v), 255))(label_ids).astype(np.uint8)
                _write(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png", trained)
    return root


def coco_stuff164k(root: Path, per_split: int = 3, size: int = 40) -> Path:
    """images/annotations per train2017/val2017, 12-digit ids, train ids 0..170 and 255."""
    rng = np.random.default_rng(2)
    for split in ("train2017", "val2017"):
        for i in range(per_split):
            name = f"{9 + i * 16:012d}"
            _write(root / "images" / split / f"{name}.jpg", _image(rng, size))
            mask = rng.choice([0, 91, 170, 255], (size, size + 8)).astype(np.uint8)
            _write(root / "annotations" / split / f"{name}_labelTrainIds.png", mask)
    return root
