"""Exports in their exact layouts train with config only: labelme's labelme2voc.py and VOC2012."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules import make_demo_dataset
from segmodels.cli.train import train
from tests.helpers import compose_train, tiny_overrides


def labelme_export(tmp_path: Path) -> Path:
    """labelme2voc.py's output: no ImageSets; masks as .npy and palette PNG, a visualisation, class names."""
    demo = make_demo_dataset(tmp_path / "demo", splits={"all": 10}, size=48)
    out = tmp_path / "labelme_export"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassPNG", "SegmentationClassVisualization"):
        (out / folder).mkdir(parents=True)
    for image in (demo / "JPEGImages").glob("*.jpg"):
        stem = image.stem.replace("all_", "IMG_")
        shutil.copy(image, out / "JPEGImages" / f"{stem}.jpg")
        mask = Image.open(demo / "SegmentationClass" / f"{image.stem}.png")
        mask.save(out / "SegmentationClassPNG" / f"{stem}.png")
        np.save(out / "SegmentationClass" / f"{stem}.npy", np.array(mask).astype(np.int32))
        Image.open(image).save(out / "SegmentationClassVisualization" / f"{stem}.jpg")
    (out / "class_names.txt").write_text("_background_\ncircle\nsquare\ntriangle\n")
    return out


def voc2012_folder(tmp_path: Path) -> Path:
    """VOCdevkit/VOC2012 as the official tarball unpacks, with our images in place of VOC's."""
    demo = make_demo_dataset(tmp_path / "demo", splits={"train": 6, "val": 4}, size=48)
    voc = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations", "ImageSets/Segmentation",
                   "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    ids = {"train": [], "val": []}
    for split in ids:
        for n, image_id in enumerate((demo / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()):
            voc_id = f"2007_{split == 'val':01d}{n:05d}"
            shutil.copy(demo / "JPEGImages" / f"{image_id}.jpg", voc / "JPEGImages" / f"{voc_id}.jpg")
            shutil.copy(demo / "SegmentationClass" / f"{image_id}.png", voc / "SegmentationClass" / f"{voc_id}.png")
            shutil.copy(demo / "SegmentationClass" / f"{image_id}.png", voc / "SegmentationObject" / f"{voc_id}.png")
            (voc / "Annotations" / f"{voc_id}.xml").write_text("<annotation/>")
            ids[split].append(voc_id)
    for split, names in {**ids, "trainval": ids["train"] + ids["val"]}.items():
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return tmp_path / "data"


def test_labelme_export_trains_with_config_only(tmp_path):
    root = labelme_export(tmp_path)
    overrides = tiny_overrides(root, tmp_path / "run", "dataset=custom", "dataset.mask_dir=SegmentationClassPNG",
                               "dataset.split_fractions={train: 0.7, val: 0.3}", "trainer.fast_dev_run=true")
    overrides.remove(f"dataset.root={root}")
    metrics = train(compose_train([f"dataset.root={root}", *overrides]))
    assert set(metrics["test/iou"]) == {"_background_", "circle", "square", "triangle"}


def test_voc2012_folder_trains_with_config_only(tmp_path):
    data = voc2012_folder(tmp_path)
    overrides = [o for o in tiny_overrides(data, tmp_path / "run") if not o.startswith("dataset.root")]
    metrics = train(compose_train(["dataset=voc2012", f"data_dir={data}", *overrides, "trainer.fast_dev_run=true"]))
    assert len(metrics["test/iou"]) == 21 and "tvmonitor" in metrics["test/iou"]
