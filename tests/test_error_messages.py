"""Errors a new user meets first, each naming the file or value and the fix (issue 31's list)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from datamodules import VOCSegmentationDataModule, make_demo_dataset


def test_a_missing_root_says_so_instead_of_asking_for_class_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"dataset root {tmp_path / 'nowhere'} does not exist; check dataset.root"):
        VOCSegmentationDataModule(str(tmp_path / "nowhere"))


def test_an_unknown_timm_name_suggests_timms_close_names():
    from segmodels import build_model

    with pytest.raises(KeyError, match=r"unknown backbone 'resnet51'; did you mean .*resnet50"):
        build_model("resnet51", "unet", 3, pretrained=False)


def test_more_classes_than_the_masks_hold_is_named(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 4, "val": 2}, size=32)  # classes 0..3
    (root / "class_names.txt").unlink()
    with pytest.warns(UserWarning, match=r"num_classes=6 but the 4 masks checked .* hold classes up to 3 only: classes "
                                         r"4..5 never appear.*dataset.num_classes=4"):
        VOCSegmentationDataModule(str(root), num_classes=6, backbone="resnet18", test_split=None).setup("fit")


def test_predict_names_why_a_broken_image_was_skipped(tmp_path, caplog):
    from segmodels.cli.predict import predict_folder
    from tests.helpers import saved_checkpoint
    from tests.segmodels.cli.test_predict import small_module

    saved_checkpoint(small_module(), tmp_path / "model.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((20, 20, 3), 120, np.uint8)).save(photos / "good.jpg")
    (photos / "cut.jpg").write_bytes((photos / "good.jpg").read_bytes()[:200])  # truncated: no end-of-image marker
    with caplog.at_level(logging.WARNING):
        written = predict_folder(str(tmp_path / "model.ckpt"), str(photos), str(tmp_path / "out"))
    assert [p.name for p in written] == ["good.png"]
    assert "cut.jpg (EOFError: no end-of-image marker: the file is truncated)" in caplog.text and "None" not in caplog.text


def test_new_inference_and_fine_tuning_options_name_the_value_and_the_fix(tmp_path):
    import numpy as np
    from omegaconf import OmegaConf

    from segmodels.cli.predict import streams
    from segmodels.cli.train import with_source_architecture
    from segmodels.models.inference import fitted_size, window_grid

    with pytest.raises(ValueError, match=r"fit=\[512\]: give \[long, short\], e.g. fit=\[2048,512\], or \[null,512\]"):
        fitted_size(100, 200, [512])
    with pytest.raises(ValueError, match=r"grid='spread': choose one of mmseg, even"):
        window_grid(100, 200, (64, 64), (32, 32), grid="spread")
    with pytest.raises(ValueError, match=r"stream=sometimes: choose one of auto, always, never"):
        streams(tmp_path / "a.tif", "sometimes")
    cfg = OmegaConf.create({"model": {"architecture": "source", "init_from": None}})
    with pytest.raises(ValueError, match=r"model.architecture=source takes .* give model.init_from=<model folder>"):
        with_source_architecture(cfg)
    cfg = OmegaConf.create({"model": {"architecture": "mine", "init_from": None}})
    with pytest.raises(ValueError, match=r"model.architecture=mine: choose config .* or source"):
        with_source_architecture(cfg)

    rasterio = pytest.importorskip("rasterio")
    from segmodels import SegmentationModule
    from segmodels.io.raster import predict_raster

    module = SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=3, pretrained=False,
                                decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}).eval()
    path = tmp_path / "five.tif"
    with rasterio.open(path, "w", driver="GTiff", height=32, width=32, count=5, dtype="uint8") as out:
        out.write(np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"five.tif: the raster has 5 image bands and the model takes 3; choose them "
                                         r"with bands=\[...\]"):
        predict_raster(module.model, module, path, tmp_path / "out.tif", tile=32)
    with pytest.raises(ValueError, match=r"five.tif: bands=\[1, 6, 2\] does not give this model's 3 inputs"):
        predict_raster(module.model, module, path, tmp_path / "out.tif", tile=32, bands=[1, 6, 2])
