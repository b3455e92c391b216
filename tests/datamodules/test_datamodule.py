"""The demo dataset and the VOC datamodule: layout, determinism, batches, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import DEMO_CLASSES, VOCSegmentationDataModule, make_demo_dataset


def test_demo_dataset_is_in_voc_layout_and_deterministic(tmp_path):
    splits = {"train": 3, "val": 2, "test": 2}
    first = make_demo_dataset(tmp_path / "a", splits=splits, size=40, seed=3)
    second = make_demo_dataset(tmp_path / "b", splits=splits, size=40, seed=3)
    for split, count in splits.items():
        ids = (first / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
        assert len(ids) == count
        for image_id in ids:
            mask = Image.open(first / "SegmentationClass" / f"{image_id}.png")
            assert mask.mode == "P" and mask.size == (40, 40)
            assert Image.open(first / "JPEGImages" / f"{image_id}.jpg").format == "JPEG"
            assert (first / "SegmentationClass" / f"{image_id}.png").read_bytes() == (
                second / "SegmentationClass" / f"{image_id}.png"
            ).read_bytes()
    values = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in (first / "SegmentationClass").glob("*.png")]))
    assert set(values) <= {0, 1, 2, 3, 255} and 255 in values and 0 in values
    assert (first / "class_names.txt").read_text().split() == DEMO_CLASSES


def test_datamodule_ships_uint8_crops_normalised_on_the_device_and_original_size_eval(tiny_demo):
    dm = VOCSegmentationDataModule(str(tiny_demo), num_classes=4, crop_size=32, batch_size=4, val_batch_size=2,
                                   num_workers=0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    assert raw["image"].dtype == raw["mask"].dtype == torch.uint8  # a quarter of float32's bytes to move
    batch = dm.on_after_batch_transfer(raw, 0)  # what Lightning calls once the batch is on the device
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 32, 32)
    assert batch["mask"].dtype == torch.long
    assert torch.allclose(batch["image"], raw["image"].float() / 127.5 - 1, atol=1e-6)
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 3, 48, 48)  # evaluation on the original size
    original = np.asarray(Image.open(tiny_demo / "SegmentationClass" / "val_0000.png"))
    assert np.array_equal(val["mask"][0].numpy(), original)


def test_split_naming_missing_files_is_refused(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 2, "val": 1}, size=32)
    (root / "SegmentationClass" / "train_0001.png").unlink()
    dm = VOCSegmentationDataModule(str(root), num_classes=4, num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"train.txt names 1 missing files, e\.g\. \[.*train_0001\.png"):
        dm.setup("fit")


def test_the_demo_datamodules_defaults_are_the_configs():
    """A notebook's DemoSegmentationDataModule(root) reads the data as python train.py does (a 512 crop of the 64 px
    images made each step 60 times dearer)."""
    from omegaconf import OmegaConf

    from datamodules import DemoSegmentationDataModule
    from tests.helpers import ROOT

    config = OmegaConf.load(ROOT / "conf/dataset/demo.yaml")
    module = DemoSegmentationDataModule("unused")
    for key in ("crop_size", "batch_size", "val_batch_size", "num_workers", "ignore_index", "num_classes"):
        assert getattr(module, key) == config[key], key
    assert module.scale_range == tuple(config.scale_range) and module.class_names == list(config.class_names)
