"""The benchmark scripts run end to end and write the JSON the README's tables come from (tiny sizes here)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, subprocess_env


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_step_benchmark_compares_lightning_with_a_plain_loop(tmp_path):
    out = tmp_path / "train_step.json"
    result = run("train_step.py", "--pairs", "resnet18:unet", "--size", "32", "--batch-size", "2", "--steps", "3",
                 "--epochs", "2", "--rounds", "1", "--channels-last", "on", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["channels_last"] is True  # every variant in NHWC, as train.py runs on a GPU
    for variant in ("lightning", "plain"):
        assert row[variant]["images_per_s"] > 0 and row[variant]["peak_memory_mb"] > 0
        assert row[variant]["steps_timed"] == 2  # 3 steps in the timed epoch: 2 intervals between step ends
    assert row["overhead_per_step"] == pytest.approx(row["lightning"]["step_s_median"] / row["plain"]["step_s_median"])
    assert row["train_gflop_per_image"]["plain"] > 0
    assert "step/plain" in result.stdout


def test_inference_benchmark_times_each_engine_and_the_window_batches(tmp_path):
    out = tmp_path / "inference.json"
    result = run("inference.py", "--sizes", "64", "--batches", "2", "--rounds", "2", "--warmup", "1", "--no-compile",
                 "--window-image", "96", "--window-rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    speed, windows = rows[0], rows[1:]
    assert {"torch", "torch+channels_last", "onnxruntime"} <= set(speed) and len(speed["onnxruntime"]["seconds"]) == 2
    assert speed["torch"]["vs_torch"] == 1.0 and speed["onnxruntime"]["images_per_s"] > 0
    assert [row["engine"] for row in windows] == ["torch", "onnxruntime"]
    assert all(row["window_batch_1"]["vs_window_batch_1"] == 1.0 for row in windows)


def test_leakage_hash_benchmark_times_the_check(tmp_path):
    out = tmp_path / "leakage_hash.json"
    result = run("leakage_hash.py", "--images", "20", "--size", "64", "48", "--repeats", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["images"] == 20 and len(row["seconds"]) == 2 and row["pairs_found"] == 0


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    result = run("gpu.py", "--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["machine"]["smoke"] is True and figures["peak"]["bf16_tflops"] > 0
    rows = {(r["model"], r["compile"]): r for r in figures["train"]}
    assert set(rows) == {("unet_resnet50", False), ("unet_resnet50", True), ("deeplabv3plus_resnet50_os8", False),
                         ("upernet_vit_base", False)}
    for row in rows.values():
        assert row["mfu"] == pytest.approx(3 * row["forward_gflop_per_image"] * 1e9 * row["images_per_s"]
                                           / (figures["peak"]["bf16_tflops"] * 1e12))
    assert [r["workers"] for r in figures["loader"]] == [0, 2] and all(r["images_per_s"] > 0 for r in figures["loader"])
    deeplab = rows[("deeplabv3plus_resnet50_os8", False)]["images_per_s"]
    assert figures["projection"]["hours"] == pytest.approx(40_000 * 16 / deeplab / 3600)


def test_feature_cache_benchmark_times_both_ways(tmp_path):
    out = tmp_path / "feature_cache.json"
    result = run("feature_cache.py", "--images", "4", "--size", "32", "--epochs", "2", "--batch-size", "2",
                 "--pairs", "resnet18:linear", "--sweep", "", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["speedup"] == pytest.approx(row["uncached"]["epoch_s_median"] / row["cached"]["epoch_s_median"])
    assert row["cached"]["cache_mb"] > 0 and row["uncached"]["cache_mb"] is None


@pytest.mark.slow
def test_mask2former_peer_benchmark_times_both_in_every_round(tmp_path):
    out = tmp_path / "mask2former_peer.json"
    result = run("mask2former_peer.py", "--size", "64", "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert len(row["rounds"]) == 1 and all(v > 0 for v in row["rounds"][0].values())
    assert abs(row["parameters"]["ours"] - row["parameters"]["peer"]) < 1000  # the same model, to its biases
    assert row["summary"]["train"]["speedup_median"] == pytest.approx(
        row["rounds"][0]["peer_train_s"] / row["rounds"][0]["ours_train_s"])


@pytest.mark.slow
def test_segformer_peer_benchmark_times_all_three_on_one_model(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    out = tmp_path / "segformer_peer.json"
    result = run("segformer_peer.py", "--size", "64", "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert len(set(row["parameters"].values())) == 1  # the same network in all three
    assert row["summary"]["infer_vs_smp"]["speedup_median"] == pytest.approx(
        row["rounds"][0]["smp_infer_s"] / row["rounds"][0]["ours_infer_s"])
