"""Studies in one command (issue 22): per-image confusion counts and the paired comparison, label-efficiency
subsets and k-fold splits through train.py, error bars and learning curves in the sweep report, MLflow."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from omegaconf import OmegaConf

from segmodels.cli.compare import compare
from segmodels.cli.sweep_report import write_report
from segmodels.cli.train import train
from segmodels.evaluation.report import PER_IMAGE_CONFUSION
from tests.helpers import ROOT, compose_train, subprocess_env, tiny_overrides


def test_a_run_keeps_each_test_images_confusion_and_compare_pairs_two_runs(trained_run, tiny_demo, tmp_path):
    run, metrics = trained_run
    with np.load(run / PER_IMAGE_CONFUSION) as saved:
        confusion, ids = saved["confusion"], list(saved["ids"])
    assert ids == (tiny_demo / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    assert confusion.sum(0).tolist() == metrics["test/confusion"]  # the per-image counts add up to the run's
    other = tmp_path / "other"
    train(compose_train(tiny_overrides(tiny_demo, other, "trainer.max_epochs=1", "seed=7")))
    result = compare(str(run), str(other), resamples=500)
    trained_other = json.loads((other / "metrics.json").read_text())
    assert result["difference"] == pytest.approx(metrics["test/mIoU"] - trained_other["test/mIoU"], abs=1e-6)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"] and result["images"] == 4
    same = compare(str(run), str(run), resamples=200)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    cli = subprocess.run([sys.executable, "-m", "segmodels.cli.compare", str(run), str(other), "--resamples", "200"],
                         cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "mIoU(A) - mIoU(B) =" in cli.stdout and "95% CI" in cli.stdout


def test_train_fraction_trains_on_a_recorded_nested_subset_and_folds_hold_out_val(tiny_demo, tmp_path):
    quarter = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "quarter", "dataset.train_fraction=0.25")))
    half = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "half", "dataset.train_count=4")))
    small = (tmp_path / "quarter" / "train_ids.txt").read_text().split()
    large = (tmp_path / "half" / "train_ids.txt").read_text().split()
    assert quarter["train_images"] == len(small) == 2 and half["train_images"] == len(large) == 4
    assert set(small) <= set(large)  # nested
    folded = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "fold", "dataset.folds=3", "dataset.fold=1")))
    fold_train = set((tmp_path / "fold" / "train_ids.txt").read_text().split())
    pool = {*(tiny_demo / "ImageSets/Segmentation/train.txt").read_text().split(),
            *(tiny_demo / "ImageSets/Segmentation/val.txt").read_text().split()}
    assert folded["train_images"] == 8 and fold_train < pool  # 12 images of train + val, a third held out
    assert folded["provenance"]["data"]["val"]["images"] == 4
    assert folded["provenance"]["data"]["test"] == quarter["provenance"]["data"]["test"]  # test untouched


def job(folder, overrides: dict, test_miou: float | None, best: float = 0.5):
    """A sweep job folder as train.py leaves it (config, Hydra's overrides, metrics)."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    config = OmegaConf.create({"seed": 0, "backbone": {"name": "resnet18"}, "decoder": {"name": "unet"},
                               "dataset": {"train_fraction": None}})
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    OmegaConf.save(config, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create([f"{k}={v}" for k, v in overrides.items()]), folder / ".hydra" / "overrides.yaml")
    if test_miou is not None:
        (folder / "metrics.json").write_text(json.dumps({"best/val/mIoU": best, "test/mIoU": test_miou}))


def test_sweep_report_gives_error_bars_over_seeds_and_a_learning_curve(tmp_path):
    values = {("a", 0.25): [0.50, 0.52, 0.54], ("a", 1.0): [0.70, 0.71, 0.72], ("b", 0.25): [0.40, 0.40, 0.46],
              ("b", 1.0): [0.60, 0.66, 0.63]}
    number = 0
    for (backbone, fraction), scores in values.items():
        for seed, score in enumerate(scores):
            job(tmp_path / str(number), {"backbone.name": backbone, "dataset.train_fraction": fraction, "seed": seed},
                score)
            number += 1
    job(tmp_path / str(number), {"backbone.name": "b", "dataset.train_fraction": 1.0, "seed": 3}, None)  # failed
    write_report(tmp_path)
    groups = {(row["group"]): row for row in json.loads((tmp_path / "groups.json").read_text())}
    row = groups["backbone.name=a dataset.train_fraction=0.25"]
    assert row["n"] == 3 and row["test mIoU mean"] == pytest.approx(0.52) and row["test mIoU std"] == pytest.approx(0.02)
    assert row["test mIoU ci_high"] - row["test mIoU mean"] == pytest.approx(4.302652729911275 * 0.02 / 3 ** 0.5)
    assert groups["backbone.name=b dataset.train_fraction=1.0"]["n"] == 3  # the failed job counts in no mean
    assert "| backbone.name=a dataset.train_fraction=0.25 | 3 |" in (tmp_path / "report.md").read_text()
    assert "| best val mIoU (%) | test mIoU (%) |" in (tmp_path / "report.md").read_text()  # one unit
    for picture in ("report.png", "learning_curve.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_two_job_sweep_logs_params_metrics_and_artifacts_to_mlflow(tiny_demo, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    database = tmp_path / "mlflow.db"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "debug=fast", f"dataset.root={tiny_demo}", "logger=mlflow",
         f"logger.mlflow.tracking_uri=sqlite:///{database}", "seed=1,2"], cwd=tmp_path, env=subprocess_env(),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    runs = mlflow.search_runs(experiment_names=["segmodels"], output_format="list")
    assert len(runs) == 2
    jobs = {json.loads(p.read_text())["provenance"]["seed"]: json.loads(p.read_text())
            for p in (tmp_path / "multirun").rglob("metrics.json")}
    for run in runs:
        params, logged = run.data.params, run.data.metrics
        assert params["backbone/name"] == "efficientnet_lite0" and params["decoder/name"] == "unet"
        seed = int(params["seed"])
        assert logged["best/val/mIoU"] == jobs[seed]["best/val/mIoU"]
        assert logged["test/mIoU"] == pytest.approx(jobs[seed]["test/mIoU"], rel=1e-6)  # logged as float32
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"metrics.json", "model", "confusion_matrix.png"} <= artifacts


def test_logger_wandb_runs_offline_and_csv_writes_its_rows(tiny_demo, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    scratch = tmp_path / "scratch"  # wandb's temporary media and artifact folders and its service's files stay here
    scratch.mkdir()
    for variable in ("TMPDIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "logger=[csv,wandb]", "logger.wandb.name=test"))
    metrics = train(cfg)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert any(p.suffix == ".wandb" and p.stat().st_size > 0 for p in run.iterdir())
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert "test/mIoU" in rows[0] and f"{metrics['best/val/mIoU']}" in (tmp_path / "csv" / "metrics.csv").read_text()
    assert not (tmp_path / "tensorboard").exists()  # only the loggers asked for
