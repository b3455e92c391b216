"""Prediction: module.predict in Python and predict.py on files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from segmodels import SegmentationModule
from segmodels.models.inference import predict_probabilities, window_starts
from tests.helpers import ROOT, saved_checkpoint, subprocess_env


def small_module() -> SegmentationModule:
    return SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=3, pretrained=False,
                              decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}).eval()


def test_predict_returns_class_indices_at_the_image_size():
    module = small_module()
    image = (np.random.default_rng(0).random((45, 61, 3)) * 255).astype(np.uint8)
    mask = module.segment(image)
    assert mask.shape == (45, 61) and mask.max() < 3
    assert np.array_equal(module.segment(Image.fromarray(image)), mask)
    expected = module((torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5).argmax(1)[0].numpy()
    assert np.array_equal(mask, expected)


def test_flip_averages_the_mirrored_prediction_and_tiles_cover_the_image():
    module = small_module()
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        plain = module(x).softmax(1)
        mirrored = module(x.flip(-1)).softmax(1).flip(-1)
    assert torch.allclose(predict_probabilities(module.model, x, flip=True), (plain + mirrored) / 2, atol=1e-6)
    tiled = predict_probabilities(module.model, x, tile=32, overlap=0.5)
    assert tiled.shape == plain.shape and torch.allclose(tiled.sum(1), torch.ones(1, 40, 52), atol=1e-5)
    assert window_starts(52, 32, 16) == [0, 16, 20] and window_starts(20, 32, 16) == [0]


def test_predict_script_writes_palette_masks_and_overlays(tmp_path):
    saved_checkpoint(small_module(), tmp_path / "model.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((37, 50, 3), 120, np.uint8)).save(photos / "a.jpg")
    Image.fromarray(np.full((70, 30, 3), 30, np.uint8)).save(photos / "b.png")
    result = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"ckpt_path={tmp_path / 'model.ckpt'}",
                             f"input={photos}", f"output={tmp_path / 'out'}", "flip=true", "tile=32"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, size in (("a", (50, 37)), ("b", (30, 70))):
        mask = Image.open(tmp_path / "out" / f"{name}.png")
        assert mask.mode == "P" and mask.size == size and np.asarray(mask).max() < 3
        assert Image.open(tmp_path / "out" / f"{name}_overlay.jpg").size == size
    assert "wrote 2 masks" in result.stdout
    assert "engine onnxruntime" in result.stdout + result.stderr  # auto: the faster exact engine, said in the log
    # no predict.log, no .hydra; the ONNX graph kept beside the checkpoint for the next call
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt", "onnx", "out", "photos"]


def test_predict_writes_the_datasets_palette_and_overlays_16_bit_images(tmp_path):
    import tifffile

    from datamodules.palette import CITYSCAPES
    from segmodels.cli.predict import predict_folder

    torch.manual_seed(0)
    module = SegmentationModule(backbone="resnet18", decoder="fpn", num_classes=19, in_channels=2, pretrained=False,
                                mean=[40.0, 5.0], std=[20.0, 2.0])
    checkpoint = tmp_path / "model.ckpt"  # what train.py stores: plain hyper-parameters, weights, the dataset config
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "datamodule": {"_target_": "datamodules.VOCSegmentationDataModule", "palette": "cityscapes"}}, checkpoint)
    (tmp_path / "in").mkdir()
    bands = np.random.default_rng(0).integers(0, 20000, (2, 40, 48), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in" / "tile.tif", bands, photometric="minisblack", planarconfig="separate")
    predict_folder(str(checkpoint), str(tmp_path / "in"), str(tmp_path / "out"))
    with Image.open(tmp_path / "out" / "tile.png") as mask:
        colours = np.array(mask.getpalette()[: 3 * 19]).reshape(19, 3)
        assert mask.size == (48, 40)
    assert [tuple(c) for c in colours] == CITYSCAPES
    overlay = np.array(Image.open(tmp_path / "out" / "tile_overlay.jpg"))
    assert 30 < overlay.mean() < 225  # the 16-bit band stretched for the eye, not clipped to white


def test_two_processes_share_a_folder_through_lightnings_predict_loop_each_file_once(tmp_path):
    saved_checkpoint(small_module(), tmp_path / "model.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        Image.fromarray((rng.random((30 + index, 41, 3)) * 255).astype(np.uint8)).save(photos / f"{index}.png")

    def run(folder: str, *extra: str) -> str:
        result = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"ckpt_path={tmp_path / 'model.ckpt'}",
                                 f"input={photos}", f"output={tmp_path / folder}", *extra], cwd=tmp_path,
                                env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    shared = run("two", "trainer=ddp_sim", "trainer.strategy=ddp")  # two processes over gloo
    counts = sorted(int(line.split("predicted ")[1].split()[0]) for line in shared.splitlines()
                    if " of 2 predicted " in line)
    assert counts == [2, 3]  # each process its own files: none twice, none left out
    run("one")
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 10
    for name in names:
        if name.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / name)),
                                  np.asarray(Image.open(tmp_path / "two" / name)))
