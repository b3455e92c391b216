"""Rasters predicted window by window: georeferenced tiled output equal to the in-memory path, nodata kept, and a job
interrupted between bands resumes where it stopped."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segmodels import SegmentationModule
from segmodels.io.raster import final_rows, predict_raster
from segmodels.models.inference import predict_probabilities

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402  (rasterio's)


def small_module() -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=3, pretrained=False,
                              decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}).eval()


def geotiff(path, pixels: np.ndarray, nodata=None):
    """A 3-band GeoTIFF in UTM 33N, 0.5 m pixels."""
    profile = {"driver": "GTiff", "height": pixels.shape[1], "width": pixels.shape[2], "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.5, 0, 500000, 0, -0.5, 4100000), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    return path


def pixels(height: int = 150, width: int = 110) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((3, height, width)) * 255).astype(np.uint8)


OPTIONS = {"tile": [48, 40], "stride": [32, 28], "window_batch": 4, "blend": "cosine"}


class Counting:
    """The model, counting windows, and dying (as a killed job does) after ``die_after`` forward passes."""

    def __init__(self, model, die_after: int | None = None) -> None:
        self.model, self.die_after, self.windows, self.calls = model, die_after, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.die_after is not None and self.calls == self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.windows += len(x)
        with torch.no_grad():
            return self.model(x)


def test_faint_averaged_scores_of_a_mask_classifier_keep_their_ranking_in_the_finished_rows():
    scores = torch.tensor([-30.0, -25.0, -28.0]).exp()  # every mask nearly off: all below 1e-8, class 1 the highest
    buffer, counts = (2 * scores).view(3, 1, 1).expand(3, 2, 5).clone(), torch.full((1, 2, 5), 2.0)
    labels, values = final_rows(buffer, counts, slice(0, 2), log_scores=True, probabilities=True, dtype="uint8")
    assert (labels == 1).all()
    expected = (scores / scores.sum() * 255).round().byte()
    assert torch.equal(torch.from_numpy(values[:, 0, 0]), expected)


def test_a_geotiff_streams_into_a_georeferenced_tiled_geotiff_equal_to_the_in_memory_path(tmp_path):
    module, data = small_module(), pixels()
    source = geotiff(tmp_path / "scene.tif", data)
    target = predict_raster(Counting(module.model), module, source, tmp_path / "out" / "scene.tif", block=16,
                            probabilities=True, **OPTIONS)
    x = (torch.from_numpy(data).float()[None] / 255 - 0.5) / 0.5  # the model's mean and std (0.5 each)
    in_memory = predict_probabilities(module.model, x, **OPTIONS)[0]
    with rasterio.open(target) as out, rasterio.open(source) as src:
        assert out.crs == src.crs and out.transform == src.transform and out.nodata == 255
        assert out.profile["tiled"] and out.block_shapes == [(16, 16)] and out.compression.value == "DEFLATE"
        assert np.array_equal(out.read(1), in_memory.argmax(0).numpy())
        assert out.colormap(1)[1][:3] == (128, 0, 0)  # the VOC palette: class 1 dark red in any GIS viewer
    with rasterio.open(tmp_path / "out" / "scene_probabilities.tif") as bands:
        assert bands.count == 3
        assert np.abs(bands.read().astype(float) - in_memory.numpy() * 255).max() <= 0.5 + 1e-3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene.tif", "scene_probabilities.tif"]


def test_nodata_is_kept_and_windows_of_nothing_else_are_skipped(tmp_path):
    module, data = small_module(), pixels(96, 80)
    data[:, :48] = 0  # the top half is outside the scene
    source = geotiff(tmp_path / "scene.tif", data, nodata=0)
    runner = Counting(module.model)
    target = predict_raster(runner, module, source, tmp_path / "scene_mask.tif", tile=32, stride=32, block=16)
    with rasterio.open(target) as out:
        mask = out.read(1)
    assert (mask[:48] == 255).all() and (mask[48:] < 3).all()
    assert runner.windows == 2 * 3  # windows at rows 32 and 64 (3 a row) ran; the row at 0, all nodata, never did


def test_a_job_killed_between_bands_resumes_where_it_stopped(tmp_path):
    module, data = small_module(), pixels()
    source = geotiff(tmp_path / "scene.tif", data)
    target = tmp_path / "out" / "scene.tif"
    whole = Counting(module.model)
    reference = predict_raster(whole, module, source, tmp_path / "whole.tif", block=16, **OPTIONS)

    with pytest.raises(KeyboardInterrupt):
        predict_raster(Counting(module.model, die_after=3), module, source, target, block=16, **OPTIONS)
    record = json.loads((tmp_path / "out" / "scene.tif.progress.json").read_text())
    assert 0 < record["rows"] < 150 and record["rows"] % 16 == 0 and not target.exists()

    resumed = Counting(module.model)
    predict_raster(resumed, module, source, target, block=16, **OPTIONS)
    assert resumed.windows < whole.windows  # the finished bands were not predicted again
    with rasterio.open(target) as out, rasterio.open(reference) as expected:
        assert np.array_equal(out.read(1), expected.read(1))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene.tif"]


def test_predict_py_killed_mid_raster_resumes_and_writes_the_uninterrupted_result(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT, saved_checkpoint, subprocess_env

    module, data = small_module(), pixels(3000, 64)
    saved_checkpoint(module, tmp_path / "model.ckpt")
    (tmp_path / "in").mkdir()
    geotiff(tmp_path / "in" / "strip.tif", data)  # georeferenced: stream=auto predicts it window by window
    command = [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={tmp_path / 'model.ckpt'}",
               f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "tile=32", "stride=32", "window_batch=1",
               "block=16", "engine=torch"]
    record = tmp_path / "out" / "strip.tif.progress.json"
    job = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if record.is_file() and json.loads(record.read_text())["rows"] >= 32:
            job.send_signal(signal.SIGKILL)  # between bands: nothing of Python's runs after this
            break
        time.sleep(0.002)
    assert job.wait(60) == -signal.SIGKILL, "the job ended before it could be killed"
    rows = json.loads(record.read_text())["rows"]
    assert 32 <= rows < 3000 and not (tmp_path / "out" / "strip.tif").exists()

    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at row {rows} of 3000" in result.stdout + result.stderr
    expected = predict_raster(Counting(module.model), module, tmp_path / "in" / "strip.tif", tmp_path / "whole.tif",
                              tile=32, stride=32, window_batch=1, block=16)
    with rasterio.open(tmp_path / "out" / "strip.tif") as out, rasterio.open(expected) as whole:
        assert out.crs == whole.crs and np.array_equal(out.read(1), whole.read(1))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["strip.tif"]
