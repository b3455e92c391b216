"""Every file the data side reads may be broken: each case ends in a message naming the file and the fix."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from datamodules import VOCSegmentationDataModule
from datamodules.images import UnreadableImage


@pytest.fixture
def data(tiny_demo, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_demo, tmp_path / "demo"))


def datamodule(root: Path, **options) -> VOCSegmentationDataModule:
    return VOCSegmentationDataModule(str(root), num_classes=4, mean=(0.5,) * 3, std=(0.5,) * 3, crop_size=32,
                                     batch_size=2, num_workers=0, **options)


def test_a_file_that_is_not_an_image_is_named_at_setup(data):
    broken = data / "JPEGImages" / "train_0003.jpg"
    broken.write_text("this is not a JPEG")
    with pytest.raises(UnreadableImage, match=r"image .*train_0003.jpg cannot be decoded .* not an image. Replace it"):
        datamodule(data).setup("fit")


def test_a_truncated_jpeg_is_named_at_first_read_or_at_setup_when_asked(data):
    broken = data / "JPEGImages" / "train_0005.jpg"
    broken.write_bytes(broken.read_bytes()[:-300])  # the header survives: sizes check out
    dm = datamodule(data)
    dm.setup("fit")
    dataset = dm.dataset("train")
    with pytest.raises(UnreadableImage, match=r"train_0005.jpg cannot be decoded .*truncated.*check_images=true"):
        dataset[dataset.ids.index("train_0005")]
    with pytest.raises(UnreadableImage, match=r"train_0005.jpg cannot be decoded"):
        datamodule(data, check_images=True).setup("fit")


def test_a_broken_mask_is_named(data):
    (data / "SegmentationClass" / "val_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UnreadableImage, match=r"mask .*val_0001.png cannot be decoded"):
        datamodule(data).setup("validate")


def test_split_and_class_name_files_that_are_not_text_are_named(data):
    (data / "ImageSets" / "Segmentation" / "val.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"split file .*val.txt is not UTF-8 text .* one image id per line"):
        datamodule(data).setup("validate")
    (data / "class_names.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"class names file .*class_names.txt is not UTF-8 text"):
        VOCSegmentationDataModule(str(data), mean=(0.5,) * 3, std=(0.5,) * 3)
