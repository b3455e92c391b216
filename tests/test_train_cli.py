"""`python train.py` as a user types it: a single run and a Hydra multirun sweep."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, subprocess_env

TINY = ["debug=fast"]


def run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


def test_cli_generates_the_demo_data_and_runs(tmp_path):
    result = run([f"data_dir={tmp_path / 'data'}", "dataset.image_size=48", *TINY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "data/demo/ImageSets/Segmentation/train.txt").is_file()
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1 and (runs[0] / "config.yaml").is_file() and (runs[0] / ".hydra/config.yaml").is_file()
    console = result.stdout + result.stderr
    assert console.count("Per-class IoU on the test split") == 1 and console.count("scale_range:") == 1  # config once
    for noise in ("Total FLOPs", "litlogger", "LitLogger", "DeprecationWarning", "Test metric"):
        assert noise not in console
    run_folder = str(runs[0].resolve())
    summary = result.stdout[result.stdout.index("run folder"):]
    assert run_folder in summary and f"{run_folder}/checkpoints/best.ckpt" in summary and "test mIoU" in summary
    assert f"tensorboard --logdir {run_folder}/tensorboard" in summary
    assert f"python predict.py ckpt_path={run_folder}/checkpoints/best" in summary


@pytest.mark.slow
def test_multirun_sweep_runs_every_job_in_its_own_folder(tiny_demo, tmp_path):
    result = run(["-m", "backbone=vgg16,resnet50", "decoder=unet,att_unet", "backbone.pretrained=false",
                  f"dataset.root={tiny_demo}", *TINY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "multirun").glob("*/*/*") if p.is_dir() and (p / "metrics.json").is_file())
    assert len(jobs) == 4
    composed = {(p / "config.yaml").read_text().split("name: ")[1].split()[0] for p in jobs}
    assert composed == {"vgg16", "resnet50"}

    # the sweep report; one job made to look crashed must be listed with its error, not dropped
    (jobs[0] / "metrics.json").unlink()
    with (jobs[0] / "train.log").open("a") as log:
        log.write("RuntimeError: CUDA out of memory\n")
    report = subprocess.run([sys.executable, "-m", "segmodels.cli.sweep_report", str(jobs[0].parent)], env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = (jobs[0].parent / "report.csv").read_text().splitlines()
    assert len(rows) == 5 and sum(",ok" in r for r in rows) == 3
    assert "failed: RuntimeError: CUDA out of memory" in (jobs[0].parent / "report.md").read_text()
    assert (jobs[0].parent / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_offline_pretrained_resnet50_stops_at_once_with_the_way_out(tmp_path):
    env = subprocess_env()
    env.update(TORCH_HOME=str(tmp_path / "torch"), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "backbone=resnet50", "decoder=att_unet",
                             f"data_dir={tmp_path}", *TINY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "resnet50-0676ba61.pth" in result.stderr and "backbone.pretrained=false" in result.stderr


def test_sweep_jobs_with_long_overrides_get_distinct_folders_the_file_system_takes(tiny_demo, tmp_path):
    tag = "x" * 150  # with the grid's other overrides, the job's folder name would pass Linux's 255 bytes
    result = run(["-m", f"+note={tag}1,{tag}2", "backbone=resnet18", "backbone.pretrained=false",
                  f"dataset.root={tiny_demo}", *TINY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "multirun").glob("*/*/*") if (p / "metrics.json").is_file())
    assert len(jobs) == 2
    assert all(len(p.name.encode()) <= 200 and p.name.startswith(f"{i}_+note=xxx") for i, p in enumerate(jobs))
    assert {(p / "config.yaml").read_text().split("note: ")[1].split()[0][-1] for p in jobs} == {"1", "2"}
