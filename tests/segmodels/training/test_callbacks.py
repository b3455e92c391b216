"""Callbacks: last.ckpt holds the latest state whether or not the monitored metric improved."""
from __future__ import annotations

import os

import torch

from segmodels.cli.train import train
from tests.helpers import compose_train, tiny_overrides


def test_last_checkpoint_stays_current_when_the_metric_plateaus(tiny_demo, tmp_path):
    # lr 0 and a backbone frozen throughout (BatchNorm statistics fixed): the model never changes, so the
    # validation mIoU never improves after epoch 0 and best.ckpt is written once
    plateau = tmp_path / "plateau"
    train(compose_train(tiny_overrides(tiny_demo, plateau, "trainer.max_epochs=3", "optimizer.lr=0",
                                       "scheduler=constant", "callbacks.freeze.unfreeze_at_epoch=-1")))
    best, last = plateau / "checkpoints/best.ckpt", plateau / "checkpoints/last.ckpt"
    steps_per_epoch = torch.load(best, map_location="cpu", weights_only=False)["global_step"]
    latest = torch.load(last, map_location="cpu", weights_only=False)
    assert not os.path.islink(last) and latest["epoch"] == 2 and latest["global_step"] == 3 * steps_per_epoch
    assert torch.load(best, map_location="cpu", weights_only=False)["epoch"] == 0  # best untouched by the write

    # when best.ckpt is written at the same step, last.ckpt is a link to it (the cheap case)
    improving = tmp_path / "improving"
    train(compose_train(tiny_overrides(tiny_demo, improving, "trainer.max_epochs=1")))
    assert os.path.islink(improving / "checkpoints/last.ckpt")
    assert os.path.realpath(improving / "checkpoints/last.ckpt") == str((improving / "checkpoints/best.ckpt").resolve())
