"""Every common VOC-style export reads right; what would train wrongly is refused with the fix."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules import VOCSegmentationDataModule, make_demo_dataset
from datamodules.palette import voc_palette
from segmodels.cli.train import train
from tests.helpers import compose_train, tiny_overrides

SPLITS = {"train": 4, "val": 2}


def demo(tmp_path: Path, name: str = "demo") -> Path:
    return make_demo_dataset(tmp_path / name, splits=SPLITS, size=40)


def module_for(root: Path, **kwargs) -> VOCSegmentationDataModule:
    kwargs.setdefault("num_classes", 4)
    return VOCSegmentationDataModule(str(root), num_workers=0, crop_size=32, batch_size=2, test_split=None, **kwargs)


def rewrite_masks(root: Path, convert) -> None:
    for path in (root / "SegmentationClass").glob("*.png"):
        convert(np.array(Image.open(path))).save(path)


def test_rgb_masks_in_the_voc_palette_read_as_class_indices(tmp_path):
    root = demo(tmp_path)
    expected = np.array(Image.open(root / "SegmentationClass/train_0000.png"))
    rewrite_masks(root, lambda m: Image.fromarray(voc_palette()[m]))
    dm = module_for(root)
    dm.setup("fit")
    assert np.array_equal(dm.dataset("train").read(0)[1], expected)


def test_rgb_masks_in_unknown_colours_are_refused(tmp_path):
    root = demo(tmp_path)
    rewrite_masks(root, lambda m: Image.fromarray(np.stack([m * 7, m, m], axis=-1).astype(np.uint8)))
    with pytest.raises(ValueError, match=r"train_0000\.png is an RGB image with \d+ colours outside the VOC palette"):
        module_for(root).setup("fit")


def test_grayscale_masks_and_grayscale_or_rgba_images(tmp_path):
    root = demo(tmp_path)
    rewrite_masks(root, lambda m: Image.fromarray(m, mode="L"))
    first = root / "JPEGImages/train_0000.jpg"
    Image.open(first).convert("L").save(first)
    second = root / "JPEGImages/train_0001.png"
    Image.open(root / "JPEGImages/train_0001.jpg").convert("RGBA").save(second)
    (root / "JPEGImages/train_0001.jpg").unlink()
    shutil.copy(second, root / "JPEGImages/train_0001.jpg")  # a PNG under a .jpg name still decodes
    dm = module_for(root)
    dm.setup("fit")
    image, mask = dm.dataset("train").read(0)
    assert image.shape == (40, 40, 3) and mask.dtype == np.uint8
    assert dm.dataset("train").read(1)[0].shape == (40, 40, 3)


def test_mask_values_outside_the_classes_are_refused_with_the_values_and_files(tmp_path):
    root = demo(tmp_path)
    rewrite_masks(root, lambda m: Image.fromarray(np.where(m == 3, 7, m).astype(np.uint8), mode="L"))
    message = r"values \[7\] that are neither a class \(0\.\.3\).*7 in .*SegmentationClass.*dataset\.num_classes"
    with pytest.raises(ValueError, match=message):
        module_for(root).setup("fit")


def test_binary_masks_saved_as_0_255_are_refused_then_read_with_the_value_map(tmp_path):
    root = demo(tmp_path)
    rewrite_masks(root, lambda m: Image.fromarray(np.where((m > 0) & (m < 255), 255, 0).astype(np.uint8), mode="L"))
    (root / "class_names.txt").unlink()
    with pytest.raises(ValueError, match=r"only 0 and 255.*dataset\.mask_value_map='\{255:1\}'"):
        module_for(root, num_classes=2).setup("fit")
    dm = module_for(root, num_classes=2, mask_value_map={255: 1})
    dm.setup("fit")
    assert set(np.unique(dm.dataset("train").read(0)[1])) <= {0, 1}


def test_image_and_mask_of_different_size_are_refused(tmp_path):
    root = demo(tmp_path)
    path = root / "SegmentationClass/val_0001.png"
    Image.open(path).resize((30, 40)).save(path)
    with pytest.raises(ValueError, match=r"val_0001\.jpg is 40x40 but its mask .*val_0001\.png is 30x40"):
        module_for(root).setup("fit")


def test_an_empty_split_is_refused(tmp_path):
    root = demo(tmp_path)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"val\.txt lists no images"):
        module_for(root).setup("fit")


def test_class_names_file_gives_the_count_and_must_agree(tmp_path):
    root = demo(tmp_path)
    assert module_for(root, num_classes=None).num_classes == 4
    with pytest.raises(ValueError, match=r"class_names\.txt lists 4 classes but dataset\.num_classes=5"):
        module_for(root, num_classes=5)


def test_padding_fills_the_mask_with_ignore_never_a_class(tmp_path):
    root = demo(tmp_path)
    dm = VOCSegmentationDataModule(str(root), num_classes=4, num_workers=0, crop_size=64, scale_range=(1.0, 1.0),
                                   batch_size=4, test_split=None)
    dm.setup("fit")
    for index in range(4):
        mask = dm.dataset("train")[index]["mask"]
        assert mask.shape == (64, 64)
        assert (mask == 255).sum() >= 64 * 64 - 40 * 40  # the 24-pixel margin, plus the shapes' borders


def test_stacked_single_channel_folders_train_a_two_channel_model(tmp_path):
    root = demo(tmp_path)
    for folder in ("ModalityA", "ModalityB"):
        (root / folder).mkdir()
        for path in (root / "JPEGImages").glob("*.jpg"):
            Image.open(path).convert("L").save(root / folder / f"{path.stem}.png")
    overrides = tiny_overrides(root, tmp_path / "run", "dataset=custom", "dataset.num_classes=null", "in_channels=2",
                               "dataset.image_dirs=[ModalityA,ModalityB]", "dataset.image_ext=.png",
                               "dataset.test_split=val", "dataset.crop_size=32", "trainer.fast_dev_run=true")
    metrics = train(compose_train(overrides))
    assert "test/mIoU" in metrics
    with pytest.raises(ValueError, match=r"have 2 channels but the model is built for in_channels=3; set in_channels=2"):
        train(compose_train([o for o in overrides if o != "in_channels=2"]))


def test_train_transforms_come_from_the_config(tmp_path):
    root = demo(tmp_path)
    cfg = compose_train([f"dataset.root={root}", f"output_dir={tmp_path}", "dataset.num_workers=0",
                         "+dataset.train_transforms=[{_target_: albumentations.CenterCrop, height: 24, width: 24}]"])
    from hydra.utils import instantiate

    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    assert dm.dataset("train")[0]["image"].shape == (3, 24, 24)


def test_split_fractions_partition_the_masks_without_split_files(tmp_path):
    root = demo(tmp_path)
    shutil.rmtree(root / "ImageSets")
    with pytest.raises(FileNotFoundError, match=r"train\.txt does not exist.*dataset\.split_fractions"):
        module_for(root).setup("fit")
    dm = module_for(root, split_fractions={"train": 0.5, "val": 0.5})
    dm.setup("fit")
    train_ids, val_ids = dm.dataset("train").ids, dm.dataset("val").ids
    assert len(train_ids) == len(val_ids) == 3 and not set(train_ids) & set(val_ids)
    assert module_for(root, split_fractions={"train": 0.5, "val": 0.5}).split_ids("train") == train_ids  # seeded


def test_an_image_in_train_and_in_val_is_named_as_leakage(tmp_path):
    import shutil
    import subprocess
    import sys

    from datamodules import VOCSegmentationDataModule, make_demo_dataset
    from tests.helpers import ROOT, subprocess_env

    root = make_demo_dataset(tmp_path / "demo", splits={"train": 4, "val": 2, "test": 2}, size=32)
    shutil.copy(root / "JPEGImages" / "train_0002.jpg", root / "JPEGImages" / "val_0001.jpg")  # the same photo twice
    with pytest.raises(ValueError, match=r"1 images of val/test are byte-identical to train images \(val: 1 "
                                         r"\(val_0001.jpg = train_0002.jpg\)\).*dataset.check_leakage=false"):
        VOCSegmentationDataModule(str(root), num_classes=4, backbone="resnet18").setup("fit")
    VOCSegmentationDataModule(str(root), num_classes=4, backbone="resnet18", check_leakage=False).setup("fit")
    result = subprocess.run([sys.executable, "-m", "datamodules.summary", str(root)], cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert "val: val_0001.jpg is byte-identical to train's train_0002.jpg" in result.stdout
