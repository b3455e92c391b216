"""Every mask format a labelling tool leaves trains through train.py's dataset=custom with config only: colour masks
in the dataset's own colours (class_colors.txt, CVAT's labelmap.txt), 16-bit PNG and TIFF label masks past 255
classes, COCO JSON (polygons and RLE) and labelme JSON polygons."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from datamodules import VOCSegmentationDataModule, make_demo_dataset
from datamodules.masks import read_mask
from tests.helpers import compose_train, tiny_overrides

COLOURS = [[10, 10, 10], [200, 30, 30], [30, 200, 30], [30, 30, 200]]
NAMES = ["background", "circle", "square", "triangle"]


def demo_pairs(tmp_path, name: str):
    """A demo folder without split files or class names: 12 images, their index masks, split by fractions."""
    root = make_demo_dataset(tmp_path / name, splits={"all": 12}, size=32)
    shutil.rmtree(root / "ImageSets")
    (root / "class_names.txt").unlink()
    masks = {p.stem: np.array(Image.open(p)) for p in sorted((root / "SegmentationClass").glob("*.png"))}
    return root, {stem: np.where(mask == 255, 0, mask) for stem, mask in masks.items()}  # the outlines as background


def summary_of(root, *options: str) -> dict:
    """python -m datamodules.summary on the folder, its report read back from --json."""
    from datamodules.summary import main

    assert main([str(root), "--json", str(root.parent / "summary.json"), *options]) == 0
    return json.loads((root.parent / "summary.json").read_text())


def trains(root, *overrides: str) -> dict:
    from segmodels.cli.train import train

    return train(compose_train(tiny_overrides(
        root, root.parent / f"{root.name}_run", "dataset=custom", "dataset.num_workers=0", "dataset.crop_size=32",
        "dataset.split_fractions={train: 0.5, val: 0.25, test: 0.25}", *overrides)))


@pytest.mark.slow
def test_colour_masks_in_the_datasets_own_colours(tmp_path):
    root, masks = demo_pairs(tmp_path, "colours")
    for stem, mask in masks.items():
        Image.fromarray(np.array(COLOURS, dtype=np.uint8)[mask]).save(root / "SegmentationClass" / f"{stem}.png")
    (root / "class_colors.txt").write_text("".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in zip(NAMES, COLOURS)))
    stem = next(iter(masks))
    data = VOCSegmentationDataModule(str(root), backbone="resnet18", split_fractions={"train": 1.0})
    assert data.class_names == NAMES and data.num_classes == 4
    assert np.array_equal(data.dataset("train").read(data.dataset("train").ids.index(stem))[1], masks[stem])
    metrics = trains(root)
    assert metrics["test/mIoU"] > 0 and len(metrics["test/confusion"]) == 4
    assert summary_of(root, "--class-weights")["class_weights"][0] > 0  # the summary reads the colours too

    # a colour in no class: named with the file and the nearest class
    painted = np.array(Image.open(root / "SegmentationClass" / f"{stem}.png"))
    painted[0, 0] = (190, 40, 35)
    Image.fromarray(painted).save(root / "SegmentationClass" / f"{stem}.png")
    with pytest.raises(ValueError, match=rf"mask .*{stem}.png holds the colour \[190, 40, 35\], which is no class's "
                                         r"colour .*the nearest class is circle, \[200, 30, 30\]"):
        read_mask(root / "SegmentationClass" / f"{stem}.png", colours=data.layout["colours"], names=NAMES)


@pytest.mark.slow
def test_cvat_segmentation_mask_export(tmp_path):
    root, masks = demo_pairs(tmp_path, "cvat")
    for stem, mask in masks.items():
        Image.fromarray(np.array(COLOURS, dtype=np.uint8)[mask]).save(root / "SegmentationClass" / f"{stem}.png")
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n"
                                       + "".join(f"{n}:{r},{g},{b}::\n" for n, (r, g, b) in zip(NAMES, COLOURS)))
    metrics = trains(root)
    assert metrics["test/mIoU"] > 0 and list(metrics["test/iou"]) == NAMES


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_label_masks_past_255_classes(tmp_path, suffix):
    root, masks = demo_pairs(tmp_path, f"deep{suffix[1:]}")
    for stem, mask in masks.items():
        deep = np.where(mask > 0, mask.astype(np.uint16) + 296, 0).astype(np.uint16)  # classes 297..299
        deep[:2] = 65535  # a band of the ignore value
        (root / "SegmentationClass" / f"{stem}.png").unlink()
        if suffix == ".png":
            Image.fromarray(deep).save(root / "SegmentationClass" / f"{stem}.png")
        else:
            tifffile.imwrite(root / "SegmentationClass" / f"{stem}.tif", deep)
    stem = next(iter(masks))
    read = read_mask(root / "SegmentationClass" / f"{stem}{suffix}")
    assert read.dtype == np.uint16 and read.max() == 65535 and set(np.unique(read)) <= {0, 297, 298, 299, 65535}
    metrics = trains(root, "dataset.num_classes=300", "dataset.ignore_index=65535", f"dataset.mask_ext={suffix}")
    confusion = np.array(metrics["test/confusion"])
    assert confusion.shape == (300, 300) and confusion[1:297].sum() == 0 and confusion[297:].sum() > 0


def coco_file(root, masks) -> dict:
    """COCO JSON of the demo masks: each shape as compressed RLE, plus a whole-image polygon of 'circle' under every
    shape (painted first, being largest, so the shapes stay visible)."""
    from pycocotools import mask as coco_mask

    images, annotations = [], []
    for number, (stem, mask) in enumerate(masks.items()):
        height, width = mask.shape
        images.append({"id": number, "file_name": f"{stem}.jpg", "height": height, "width": width})
        annotations.append({"id": len(annotations), "image_id": number, "category_id": 7, "iscrowd": 0,
                            "segmentation": [[0, 0, width, 0, width, height, 0, height]], "area": height * width})
        for value in sorted(set(np.unique(mask).tolist()) - {0, 255}):
            rle = coco_mask.encode(np.asfortranarray((mask == value).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations), "image_id": number, "category_id": {1: 7, 2: 3, 3: 11}[value],
                                "iscrowd": 0, "segmentation": rle, "area": int((mask == value).sum())})
    categories = [{"id": 3, "name": "square"}, {"id": 7, "name": "circle"}, {"id": 11, "name": "triangle"}]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.slow
def test_coco_json_is_drawn_once_and_trains(tmp_path):
    root, masks = demo_pairs(tmp_path, "coco")
    shutil.rmtree(root / "SegmentationClass")
    (root / "annotations.json").write_text(json.dumps(coco_file(root, masks)))
    data = VOCSegmentationDataModule(str(root), backbone="resnet18", annotations="coco",
                                     annotation_file="annotations.json", split_fractions={"train": 1.0})
    assert data.class_names == ["background", "square", "circle", "triangle"]  # categories by id: 3, 7, 11
    stem = next(iter(masks))
    expected = np.select([masks[stem] == 2, masks[stem] == 3], [1, 3], default=2)  # ids 3 -> 1, 7 -> 2, 11 -> 3
    drawn = data.dataset("train").read(data.dataset("train").ids.index(stem))[1]
    assert np.array_equal(drawn, expected)
    cache = next((root / ".segmodels_masks").iterdir())
    stamp = (cache / f"{stem}.png").stat().st_mtime_ns
    VOCSegmentationDataModule(str(root), backbone="resnet18", annotations="coco", annotation_file="annotations.json",
                              split_fractions={"train": 1.0})
    assert (cache / f"{stem}.png").stat().st_mtime_ns == stamp  # drawn once, read from the cache after
    metrics = trains(root, "dataset.annotations=coco", "dataset.annotation_file=annotations.json")
    assert list(metrics["test/iou"]) == ["background", "square", "circle", "triangle"]
    report = summary_of(root, "--annotations", "coco", "--annotation-file", "annotations.json", "--class-weights")
    assert list(report["class_frequency"]) == ["background", "square", "circle", "triangle"]
    assert report["splits"]["all"]["images"] == 12 and report["roles"]["test"] == "split_fractions"


@pytest.mark.slow
def test_labelme_json_polygons_later_shapes_on_top(tmp_path):
    root = make_demo_dataset(tmp_path / "labelme", splits={"all": 12}, size=32)
    shutil.rmtree(root / "ImageSets")
    shutil.rmtree(root / "SegmentationClass")
    (root / "class_names.txt").unlink()
    for image in sorted((root / "JPEGImages").glob("*.jpg")):
        shapes = [{"label": "square", "points": [[4, 4], [20, 4], [20, 20], [4, 20]], "shape_type": "polygon"},
                  {"label": "circle", "points": [[10, 10], [26, 26]], "shape_type": "rectangle"},
                  {"label": "__ignore__", "points": [[0, 28], [31, 28], [31, 31], [0, 31]], "shape_type": "polygon"}]
        record = {"shapes": shapes, "imagePath": image.name, "imageHeight": 32, "imageWidth": 32}
        (root / "JPEGImages" / f"{image.stem}.json").write_text(json.dumps(record))
    data = VOCSegmentationDataModule(str(root), backbone="resnet18", annotations="labelme", image_dir="JPEGImages",
                                     split_fractions={"train": 1.0})
    assert data.class_names == ["_background_", "circle", "square"]
    mask = data.dataset("train").read(0)[1]
    assert mask[5, 5] == 2 and mask[15, 15] == 1 and mask[24, 24] == 1 and mask[2, 2] == 0 and mask[30, 5] == 255
    metrics = trains(root, "dataset.annotations=labelme", "dataset.num_classes=3")
    assert list(metrics["test/iou"]) == ["_background_", "circle", "square"]
