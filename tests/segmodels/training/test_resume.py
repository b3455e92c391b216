"""Runs that survive a kill or a preemption: step checkpoints, exact mid-epoch resume, ckpt_path=auto, SIGTERM."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, subprocess_env

# four steps an epoch (8 images, batch 2), two epochs; last.ckpt every 3 steps and at each epoch's end: after steps
# 3, 4 and 6 (the second batch of epoch 1)
RUN = ["debug=fast", "trainer.limit_train_batches=1.0", "trainer.max_epochs=2", "dataset.batch_size=2",
       "decoder=fpn", "decoder.pyramid_channels=16", "decoder.decoder_channels=16",  # dropout: the RNG matters
       "callbacks.checkpoint.every_n_steps=3", "callbacks.freeze.unfreeze_at_epoch=1"]


def train_py(data: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *RUN, f"dataset.root={data}", f"hydra.run.dir={folder}", *extra],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def same_run(a: Path, b: Path) -> None:
    first, second = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    for key in ("best/val/mIoU", "test/mIoU", "test/loss", "test/mean_boundary_iou", "test/ece"):
        assert first[key] == second[key], key
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_a_kill_between_step_checkpoints_and_a_sigterm_resume_to_the_uninterrupted_run(tiny_demo, tmp_path):
    straight = tmp_path / "straight"
    assert train_py(tiny_demo, straight).returncode == 0

    # SIGKILL at step 7: nothing runs after it; the step-6 checkpoint (mid epoch 1) is the latest state
    killed = tmp_path / "killed"
    result = train_py(tiny_demo, killed, "+callbacks.fault._target_=tests.helpers.faults.SignalAtStep",
                      "+callbacks.fault.step=7")
    assert result.returncode == -9
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    resumed = train_py(tiny_demo, killed)  # ckpt_path=auto is the default: the same folder resumes by itself
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"ckpt_path=auto: resuming from {killed / 'checkpoints' / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    same_run(straight, killed)

    # SIGTERM at step 7: the run saves step 7 before it exits, and the re-run goes on from there
    stopped = tmp_path / "stopped"
    result = train_py(tiny_demo, stopped, "+callbacks.fault._target_=tests.helpers.faults.SignalAtStep",
                      "+callbacks.fault.step=7", "+callbacks.fault.name=SIGTERM")
    assert result.returncode == 143 and "SIGTERM: saved the latest state (step 7)" in result.stdout + result.stderr
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 7
    assert train_py(tiny_demo, stopped).returncode == 0
    same_run(straight, stopped)


def test_ckpt_path_auto_starts_fresh_in_a_new_folder_and_an_explicit_broken_one_is_named(tiny_demo, tmp_path):
    from segmodels.cli.train import resume_path

    assert resume_path("auto", tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match=r"ckpt_path=auto found=.*last.ckpt: the file cannot be read as a checkpoint"):
        resume_path("auto", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=.*nope.ckpt: no such checkpoint file"):
        resume_path(str(tmp_path / "nope.ckpt"), tmp_path)


def test_out_of_memory_names_the_settings_and_the_ways_out(tiny_demo, tmp_path):
    from segmodels.cli.train import train
    from tests.helpers import compose_train, tiny_overrides

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "+callbacks.fault._target_=tests.helpers.faults.OutOfMemoryAtStep"))
    with pytest.raises(torch.OutOfMemoryError, match=r"out of GPU memory at dataset.batch_size=4, dataset.crop_size=48, "
                                                     r"trainer.precision=32-true.*accumulate_grad_batches.*trainer=gpu.*"
                                                     r"grad_checkpointing=true.*tune_batch_size=true"):
        train(cfg)


def test_the_batch_size_finder_picks_the_largest_batch_that_runs(tiny_demo, tmp_path):
    from segmodels.cli.train import train
    from tests.helpers import assert_scores_match_confusion, compose_train, tiny_overrides

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "tune_batch_size=true", "dataset.batch_size=2",
                                       "trainer.limit_train_batches=1.0"))
    metrics = train(cfg)  # no memory limit on the CPU: it grows until a batch would hold the whole training set (8)
    assert metrics["batch_size"] == 8
    assert_scores_match_confusion(metrics)


def test_a_step_checkpoint_never_saves_non_finite_weights(tiny_demo, tmp_path):
    """The loss flag is read only every few steps: a save between two reads looks at the weights itself."""
    from segmodels.cli.train import train
    from tests.helpers import compose_train, tiny_overrides

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "trainer.limit_train_batches=1.0", "dataset.batch_size=2",
                                       "callbacks.checkpoint.every_n_steps=1", "callbacks.nonfinite_loss.check_every=50",
                                       "+callbacks.fault._target_=tests.helpers.faults.NonFiniteWeightsAtStep",
                                       "+callbacks.fault.step=2"))
    with pytest.raises(FloatingPointError, match=r"weights or BatchNorm statistics hold NaN or Inf at global step 2"):
        train(cfg)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
