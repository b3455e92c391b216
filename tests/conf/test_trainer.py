"""Scaling out on this CPU machine: two DDP processes over gloo, ddp_spawn inside a sweep, an optuna
search, the SLURM launcher's job parameters, channels-last and torch.compile."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from segmodels.cli.train import train
from tests.helpers import ROOT, compose_train, subprocess_env, tiny_overrides

SMALL = ["dataset.crop_size=48", "dataset.val_batch_size=2", "dataset.num_workers=0",
         "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


def run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_process_and_stay_in_sync(tiny_demo, tmp_path):
    """Same seed and global batch (2 processes x 2 == 1 x 4), freeze for 2 epochs then unfreeze."""
    common = [f"dataset.root={tiny_demo}", *SMALL, "trainer.max_epochs=4", "callbacks.freeze.unfreeze_at_epoch=2"]
    two = run(["trainer=ddp_sim", "dataset.batch_size=2", f"hydra.run.dir={tmp_path / 'two'}", *common], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run(["trainer=cpu", "dataset.batch_size=4", f"hydra.run.dir={tmp_path / 'one'}", *common], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two_metrics = json.loads((tmp_path / "two/metrics.json").read_text())
    one_metrics = json.loads((tmp_path / "one/metrics.json").read_text())
    assert two_metrics["processes"] == 2 and one_metrics["processes"] == 1
    # BatchNorm statistics are per process on CPU (torch's SyncBatchNorm is GPU-only), hence a tolerance
    for key in ("test/mIoU", "test/pixel_accuracy", "best/val/mIoU"):
        assert abs(two_metrics[key] - one_metrics[key]) < 0.02, (key, two_metrics[key], one_metrics[key])
    # the unfrozen backbone trained identically on both ranks (CheckRanksInSync would have stopped the run)
    first, second = two_metrics["parameter_checksum_per_process"]
    assert first == second
    # rank 0 alone wrote the run folder; the second process only logged
    written = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "one").iterdir()) + ["train_ddp_process_1.log"]
    assert len(list((tmp_path / "two/checkpoints").iterdir())) == 2  # best.ckpt, last.ckpt
    # each test image's counts gathered from both processes, in the split's order, adding up to the run's confusion
    with np.load(tmp_path / "two" / "test_confusion_per_image.npz") as saved:
        assert list(saved["ids"]) == (tiny_demo / "ImageSets/Segmentation/test.txt").read_text().split()
        assert saved["confusion"].sum(0).tolist() == two_metrics["test/confusion"]


@pytest.mark.slow
def test_ddp_spawn_runs_multi_process_jobs_inside_a_sweep(tiny_demo, tmp_path):
    result = run(["-m", "trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                  "trainer.sync_batchnorm=false", "decoder=unet,fcn8s", f"dataset.root={tiny_demo}", *SMALL,
                  "dataset.batch_size=2", "trainer.fast_dev_run=true", "hydra.sweep.subdir=${hydra.job.num}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "multirun").glob("*/*/[0-9]*"))
    assert [p.name for p in jobs] == ["0", "1"]  # the sweep ran once, not once per process
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["processes"] == 2
        # the spawned processes log every class's IoU; their mean is the mIoU (absent classes are not logged)
        per_class = [v for k, v in metrics.items() if k.startswith("test/IoU/")]
        assert per_class and abs(metrics["test/mIoU"] - sum(per_class) / len(per_class)) < 1e-6


def hydra_optuna_sweeper_installed() -> bool:
    """Hydra's sweeper (the [optuna] extra) needs optuna < 3; the test environment has a current Optuna instead."""
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
        import optuna
    except ImportError:
        return False
    return int(optuna.__version__.split(".")[0]) < 3


@pytest.mark.slow
@pytest.mark.skipif(not hydra_optuna_sweeper_installed(), reason="pip install -e '.[optuna]' (optuna < 3) for this path")
def test_optuna_search_runs_two_trials_and_reports_the_best(tiny_demo, tmp_path):
    result = run(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "backbone=resnet18", "backbone.pretrained=false",
                  f"dataset.root={tiny_demo}", *SMALL, "dataset.batch_size=4", "trainer.max_epochs=1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "callbacks.freeze.unfreeze_at_epoch"}
    trials = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert results["best_value"] == pytest.approx(max(t["best/val/mIoU"] for t in trials))
    sampled = [yaml.safe_load((sweep / str(i) / ".hydra/overrides.yaml").read_text()) for i in (0, 1)]
    assert sampled[0] != sampled[1]
    # the study is kept beside the trials: the same command in the same folder resumes it
    resumed = run(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "backbone=resnet18", f"hydra.sweep.dir={sweep}",
                   "backbone.pretrained=false", f"dataset.root={tiny_demo}", *SMALL, "dataset.batch_size=4",
                   "trainer.max_epochs=1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="resnet18_unet", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)


@pytest.mark.slow
def test_search_on_a_current_optuna_runs_trials_keeps_its_study_and_resumes(tiny_demo, tmp_path):
    import optuna

    from segmodels.cli.search import main

    assert int(optuna.__version__.split(".")[0]) >= 4
    overrides = ["backbone=resnet18", "backbone.pretrained=false", f"dataset.root={tiny_demo}", *SMALL,
                 "dataset.batch_size=4", "trainer.max_epochs=1", "debug=fast", "optimizer.weight_decay=0.01"]
    result = main([str(tmp_path / "search"), "--trials", "2", *overrides, "optimizer.lr=tag(log, interval(1e-4, 1e-2))"])
    trials = [json.loads((tmp_path / "search" / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert result["best_value"] == pytest.approx(max(t["best/val/mIoU"] for t in trials))
    assert set(result["best_params"]) == {"optimizer.lr", "callbacks.freeze.unfreeze_at_epoch"}  # weight decay fixed
    sampled = [yaml.safe_load((tmp_path / "search" / str(i) / "config.yaml").read_text())["optimizer"] for i in (0, 1)]
    assert sampled[0]["lr"] != sampled[1]["lr"] and sampled[0]["weight_decay"] == 0.01
    assert 1e-4 <= sampled[0]["lr"] <= 1e-2
    resumed = main([str(tmp_path / "search"), "--trials", "1", *overrides])  # the study in optuna.db goes on
    assert resumed["trials"] == 3 and (tmp_path / "search" / "2" / "metrics.json").is_file()


def test_slurm_launcher_asks_for_one_task_per_gpu():
    import submitit.slurm.slurm

    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                 "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 2)
    assert cfg.trainer.strategy.startswith("ddp") and cfg.trainer.sync_batchnorm

    # the sbatch script submitit writes from them (sbatch's names: ntasks_per_node, time, mem)
    script = submitit.slurm.slurm._make_sbatch_string(
        command="python -u train.py", folder="/tmp/submitit-test", gpus_per_node=launcher.gpus_per_node,
        ntasks_per_node=launcher.tasks_per_node, nodes=launcher.nodes, time=launcher.timeout_min,
        cpus_per_task=launcher.cpus_per_task, mem=f"{launcher.mem_gb}GB", partition=launcher.partition,
        signal_delay_s=launcher.signal_delay_s,
    )
    for line in ("--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2", "--partition=gpu", "--time=90",
                 "--cpus-per-task=8", "--mem=64GB", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script, line


def test_srun_tasks_share_one_run_folder(monkeypatch):
    """Each task of `srun python train.py trainer=ddp` composes the config itself: same folder for all."""
    def run_dir() -> str:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose(config_name="train", overrides=["trainer=ddp"], return_hydra_config=True).hydra.run.dir

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert run_dir() == "outputs/slurm-4242.0"
    monkeypatch.delenv("SLURM_STEP_ID")  # a batch script: the job's folder, found again when the job is requeued
    assert run_dir() == "outputs/slurm-4242"
    monkeypatch.delenv("SLURM_JOB_ID")  # not under SLURM: a time-named folder as usual
    assert re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}", run_dir())


@pytest.mark.slow
def test_channels_last_and_compile_train_and_save_plain_weights(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # not ~600 MB left in /tmp
    cfg = compose_train(tiny_overrides(
        tiny_demo, tmp_path, "backbone=resnet18", "backbone.pretrained=false", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "model.channels_last=true", "model.compile=true",
    ))
    torch._dynamo.reset()
    metrics = train(cfg)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # torch.compile did compile
    state = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in key for key in state)  # checkpoints load into a plain model
    assert state["model.backbone.conv1.weight"].is_contiguous(memory_format=torch.channels_last)
    assert metrics["test/mIoU"] >= 0


def test_fit_filename_keeps_short_names_and_shortens_long_ones_to_distinct_names():
    from segmodels.cli.resolvers import fit_filename

    assert fit_filename("3_backbone=vgg16,decoder=unet") == "3_backbone=vgg16,decoder=unet"
    first, second = fit_filename("0_lr=" + "1" * 300), fit_filename("0_lr=" + "1" * 299 + "2")
    assert first != second and len(first.encode()) == len(second.encode()) == 200
    assert first.startswith("0_lr=111") and len(fit_filename("é" * 150).encode()) <= 200  # never a split character
