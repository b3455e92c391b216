"""Broken checkpoints, weights files and predict folders on the model side; checkpoint writes that fail."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from segmodels import SegmentationModule, build_model
from tests.helpers import ROOT, subprocess_env


def test_broken_weights_files_are_named(tmp_path):
    truncated = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18", "unet", 2, pretrained=False).backbone.state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"backbone 'resnet18': weights file .*resnet18.pth cannot be read .* truncated"):
        build_model("resnet18", "unet", 2, backbone_kwargs={"weights": str(truncated)})
    fake = tmp_path / "dinov2.safetensors"
    fake.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match=r"weights file .*dinov2.safetensors cannot be read"):
        build_model("vit_small_patch14_dinov2", "linear", 2, backbone_kwargs={"depth": 2, "weights": str(fake)})


def test_broken_checkpoints_are_named_wherever_they_are_read(trained_run, tiny_demo, tmp_path):
    run, trained = trained_run
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(open(trained["best_checkpoint"], "rb").read()[:4096])
    with pytest.raises(ValueError, match=r"checkpoint_path=.*broken.ckpt: the file cannot be read as a checkpoint"):
        SegmentationModule.load_from_checkpoint(str(broken))
    from segmodels.io.init_from import load_matching

    with pytest.raises(ValueError, match=r"model.init_from=.*broken.ckpt: the file cannot be read"):
        load_matching(SegmentationModule(num_classes=4, pretrained=False), broken)
    result = subprocess.run([sys.executable, "predict.py", f"ckpt_path={broken}", f"input={tiny_demo / 'JPEGImages'}",
                             f"output={tmp_path / 'out'}"], cwd=ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0 and "broken.ckpt: the file cannot be read as a checkpoint" in result.stderr


def test_predict_skips_what_is_not_an_image_and_says_so(trained_run, tiny_demo, tmp_path):
    run, trained = trained_run
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("test_0000.jpg", "test_0001.jpg"):
        (folder / name).write_bytes((tiny_demo / "JPEGImages" / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 garbage \xff\xd9")
    result = subprocess.run([sys.executable, "predict.py", f"ckpt_path={trained['best_checkpoint']}", f"input={folder}",
                             f"output={tmp_path / 'out'}"], cwd=ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "skipped 1 files that are not images" in output and "notes.txt" in output
    assert "skipped 1 images that cannot be decoded: broken.jpg" in output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["test_0000.png", "test_0001.png"]


WRITE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys, torch
from segmodels.io.checkpoint_writer import SafeCheckpointIO
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
path = sys.argv[1]
SafeCheckpointIO().save_checkpoint({"weights": torch.zeros(1000)}, path)  # the good one, ~4 kB
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # the disk 'fills up' at 100 kB per file
try:
    SafeCheckpointIO().save_checkpoint({"weights": torch.ones(1_000_000)}, path)  # ~4 MB
except OSError as error:
    print("ERROR", error)
"""


def test_a_checkpoint_write_that_fails_leaves_the_previous_file_and_says_how_much_room_it_needed(tmp_path):
    path = tmp_path / "last.ckpt"
    result = subprocess.run([sys.executable, "-c", WRITE_UNDER_A_FILE_SIZE_LIMIT, str(path)], cwd=ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"could not write checkpoint {path}" in result.stdout and "it needs 3.8 MB" in result.stdout
    assert "the previous last.ckpt is intact" in result.stdout and "callbacks.checkpoint.dirpath" in result.stdout
    assert torch.equal(torch.load(path)["weights"], torch.zeros(1000))  # the previous checkpoint, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
