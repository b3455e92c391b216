"""Prediction of rasters larger than memory: a GeoTIFF (or any TIFF GDAL reads) in, a georeferenced, tiled,
compressed GeoTIFF of class indices out, read and written band of rows by band of rows.

The sliding windows are those of ``models.inference`` (the same grid, blend weights and order of additions of
logits, so the class map equals the in-memory path's; ``flip`` mirrors each window rather than the whole image): one
row of windows is read as a strip (rasterio windowed reads), predicted ``window_batch`` windows at a time, and their
logits added into a float32 buffer of the strip's rows; rows no later window row can
reach are final, turned into classes, and written to the output in whole blocks. Memory is bounded by the strip
(window height x image width x classes) and the batch, never by the image's height; GDAL's block cache is held
to ``CACHE_MB``. Pixels the source marks as
nodata (its nodata value, alpha band or mask) are written as nodata, and windows holding nothing else are skipped.

Resuming: the output is written to ``<name>.tif.partial`` and ``<name>.tif.progress.json`` records, after each band
is on disk, how many rows are done and for which source, model and settings. Started again with the same ones, the
job skips the finished rows (it re-reads only the window row that overlaps them) and goes on; when all rows are done
the partial file becomes ``<name>.tif``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from datamodules.normalization import Normalization
from datamodules.palette import palette_of
from datamodules.progress import progress
from segmodels.models.inference import blend_weights, log_of_scores, pair, window_starts, window_stride

log = logging.getLogger(__name__)
NODATA = 255  # the class maps' nodata value (uint8); uint16 maps (more than 255 classes) use 65535
CACHE_MB = 64  # GDAL's block cache (its default, 5% of the machine's memory, would grow with the image's width)


def require_rasterio(path: Path):
    try:
        import rasterio
    except ImportError as error:
        raise ImportError(f"{path}: predicting a GeoTIFF window by window needs rasterio: pip install -e '.[geo]'") \
            from error
    return rasterio


def open_raster(path: Path):
    rasterio = require_rasterio(path)
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise ValueError(f"{path}: GDAL cannot read this raster ({error}); give a GeoTIFF or TIFF") from error


def source_bands(source, path: Path, channels: int, bands: Sequence[int] | None) -> list[int]:
    """The 1-based band numbers fed to a model of ``channels`` inputs: ``bands`` when given, else all bands, less a
    trailing alpha band."""
    from rasterio.enums import ColorInterp

    if bands:
        chosen = [int(b) for b in bands]
        if len(chosen) != channels or any(not 1 <= b <= source.count for b in chosen):
            raise ValueError(f"{path}: bands={chosen} does not give this model's {channels} inputs from the file's "
                             f"{source.count} bands (numbered from 1)")
        return chosen
    chosen = [b for b in range(1, source.count + 1) if source.colorinterp[b - 1] != ColorInterp.alpha]
    if len(chosen) != channels:
        raise ValueError(f"{path}: the raster has {len(chosen)} image bands and the model takes {channels}; choose "
                         f"them with bands=[...] (1-based), e.g. bands=[1,2,3]")
    return chosen


def has_mask(source) -> bool:
    """Whether GDAL knows nodata pixels in ``source`` (a nodata value, an alpha band or a mask band)."""
    from rasterio.enums import MaskFlags

    return any(MaskFlags.all_valid not in flags for flags in source.mask_flag_enums)


def readable(path: Path, height: int, width: int) -> bool:
    """Whether GDAL opens ``path`` as a raster of this size (an unfinished output worth resuming)."""
    import rasterio

    try:
        with rasterio.open(path) as raster:
            return (raster.height, raster.width) == (height, width)
    except rasterio.errors.RasterioIOError:
        return False


def output_profile(source, classes: int, block: int) -> dict:
    dtype, nodata = ("uint8", NODATA) if classes < NODATA else ("uint16", 65535)
    return {"driver": "GTiff", "height": source.height, "width": source.width, "count": 1, "dtype": dtype,
            "crs": source.crs, "transform": source.transform, "nodata": nodata, "tiled": True, "blockxsize": block,
            "blockysize": block, "compress": "deflate", "BIGTIFF": "IF_SAFER"}


class Progress:
    """``<name>.tif.progress.json``: the rows on disk, and what they were made from (``key``)."""

    def __init__(self, target: Path, key: dict) -> None:
        self.path, self.key = target.with_name(target.name + ".progress.json"), key

    def rows_done(self) -> int:
        if not self.path.is_file():
            return 0
        record = json.loads(self.path.read_text())
        return int(record["rows"]) if record.get("key") == self.key else 0

    def save(self, rows: int) -> None:
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps({"rows": rows, "key": self.key}))
        os.replace(partial, self.path)  # a kill leaves the old record or the new one, never half of one


def final_rows(buffer: torch.Tensor, counts: torch.Tensor, rows: slice, log_scores: bool, probabilities: bool,
               dtype: str, columns: int = 2048) -> tuple[np.ndarray, np.ndarray | None]:
    """Classes (and uint8 probabilities) of the finished ``rows``, a block of ``columns`` at a time so that the
    temporaries stay small whatever the image's width."""
    height, width = rows.stop - rows.start, buffer.shape[-1]
    labels = np.empty((height, width), dtype=dtype)
    values = np.empty((buffer.shape[0], height, width), dtype=np.uint8) if probabilities else None
    for start in range(0, width, columns):
        block = slice(start, start + columns)
        averaged = buffer[:, rows, block] / counts[:, rows, block].clamp(min=1e-12)
        averaged = (log_of_scores(averaged) if log_scores else averaged).softmax(dim=0)
        labels[:, block] = averaged.argmax(0).numpy()
        if values is not None:
            values[:, :, block] = (averaged * 255).round().clamp(0, 255).byte().numpy()
    return labels, values


def predict_raster(
    runner: Callable[[torch.Tensor], torch.Tensor], module, path: str | Path, target: str | Path,
    tile: int | Sequence[int] = 512, overlap: float = 0.25, stride: int | Sequence[int] | None = None,
    window_batch: int = 4, blend: str = "uniform", flip: bool = False, probabilities: bool = False,
    bands: Sequence[int] | None = None, block: int = 256, model_key: str = "",
) -> Path:
    """Predict the raster at ``path`` window by window into ``target`` (a GeoTIFF of class indices with the source's
    CRS, transform and nodata; ``probabilities``: also ``<target stem>_probabilities.tif``, one uint8 band per class,
    probability x 255). ``runner`` maps normalised images to logits (an engine of ``io.engines``); ``model_key``
    names the model in the resume record. Returns ``target``."""
    path, target = Path(path), Path(target)
    rasterio = require_rasterio(path)
    from rasterio.windows import Window

    channels, classes = module.hparams.in_channels, module.hparams.num_classes
    normalize = Normalization(tuple(module.mean), tuple(module.std))
    with rasterio.Env(GDAL_CACHEMAX=CACHE_MB), open_raster(path) as source:
        chosen = source_bands(source, path, channels, bands)
        height, width, masked = source.height, source.width, has_mask(source)
        tile = pair(tile, "tile")
        window = (min(tile[0], height), min(tile[1], width))
        steps = window_stride(tile, stride, overlap)
        tops, lefts = window_starts(height, tile[0], steps[0]), window_starts(width, tile[1], steps[1])
        profile = output_profile(source, classes, block)
        colormap = {i: tuple(int(c) for c in colour) for i, colour in
                    enumerate(palette_of((module.datamodule_config or {}).get("palette") or "voc")[:min(classes, 256)])}
        stat = path.stat()
        key = {"source": str(path.resolve()), "bytes": stat.st_size, "mtime": stat.st_mtime_ns, "model": model_key,
               "window": list(window), "stride": list(steps), "blend": blend, "flip": flip, "bands": chosen,
               "probabilities": probabilities, "block": block}
        record = Progress(target, key)
        partial = target.with_name(target.name + ".partial")
        partial_probabilities = target.with_name(f"{target.stem}_probabilities.tif.partial")
        done = record.rows_done() if partial.is_file() else 0
        if done and not readable(partial, height, width):
            log.warning("%s: the unfinished output %s cannot be read (killed while writing?); starting again", path,
                        partial)
            done = 0
        if not done:
            target.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(partial, "w", **profile) as output:
                if profile["dtype"] == "uint8":
                    output.write_colormap(1, colormap)
            if probabilities:
                with rasterio.open(partial_probabilities, "w", **{**profile, "count": classes, "dtype": "uint8",
                                                                   "nodata": None}):
                    pass
            record.save(0)
        else:
            log.info("%s: resuming at row %d of %d (%s)", path, done, height, record.path)
        weights = blend_weights(*window, blend, torch.device("cpu"))
        log_scores = bool(getattr(runner, "log_scores", False))
        rows_todo = [i for i, top in enumerate(tops) if top + window[0] > done]
        total_windows = len(rows_todo) * len(lefts)
        bar = progress(iter(()), desc=f"predict {path.name}", unit="window", total=total_windows)
        buffer, counts, buffer_top, written = None, None, 0, done
        pending: list[np.ndarray] = []  # final class rows (and probability rows) not yet written: whole blocks go out
        pending_probabilities: list[np.ndarray] = []
        started, seen, next_report = time.perf_counter(), 0, 0.1
        for i in rows_todo:
            top = tops[i]
            final = tops[i + 1] if i + 1 < len(tops) else height  # rows above this get nothing more
            if buffer is None:
                buffer_top = top
                buffer = torch.zeros(classes, window[0], width)
                counts = torch.zeros(1, window[0], width)
            else:  # in place: the rows still open move up, the rest start again from zero
                keep = buffer_top + buffer.shape[1] - top
                for held in (buffer, counts):
                    if keep > 0:
                        held[:, :keep] = held[:, held.shape[1] - keep:].clone()
                    held[:, max(keep, 0):] = 0
                buffer_top = top
            strip = torch.from_numpy(source.read(chosen, window=Window(0, top, width, window[0])))  # as stored
            valid = torch.from_numpy(source.dataset_mask(window=Window(0, top, width, window[0])) > 0) if masked else None
            lefts_used = [left for left in lefts if valid is None or bool(valid[:, left:left + window[1]].any())]
            for first in range(0, len(lefts_used), window_batch):
                chunk = lefts_used[first:first + window_batch]
                crops = normalize(torch.stack([strip[:, :, left:left + window[1]].float() for left in chunk]))
                scores = runner(crops).float()
                if flip:  # each window and its mirror image, logits averaged
                    scores = (scores + runner(crops.flip(-1)).float().flip(-1)) / 2
                scores = scores.exp() if log_scores else scores  # mask classification: its scores averaged
                for index, left in enumerate(chunk):
                    buffer[:, :, left:left + window[1]] += scores[index] * weights[0]
                    counts[:, :, left:left + window[1]] += weights[0]
            bar.update(len(lefts))
            seen += len(lefts)
            finished = slice(max(top, written) - buffer_top, final - buffer_top)
            if finished.stop > finished.start:
                labels, values = final_rows(buffer, counts, finished, log_scores, probabilities, profile["dtype"])
                empty = (counts[0, finished] == 0).numpy()
                if valid is not None:
                    empty |= ~valid[finished.start + buffer_top - top:finished.stop + buffer_top - top].numpy()
                labels[empty] = profile["nodata"]
                pending.append(labels)
                if probabilities:
                    pending_probabilities.append(values)
            ready = sum(len(p) for p in pending)
            last = final >= height
            amount = ready if last else ready // block * block
            if amount:
                labels = np.concatenate(pending)
                with rasterio.open(partial, "r+") as output:
                    output.write(labels[:amount], 1, window=Window(0, written, width, amount))
                pending = [labels[amount:]] if amount < ready else []
                if probabilities:
                    values = np.concatenate(pending_probabilities, axis=1)
                    with rasterio.open(partial_probabilities, "r+") as output:
                        output.write(values[:, :amount], window=Window(0, written, width, amount))
                    pending_probabilities = [values[:, amount:]] if amount < ready else []
                written += amount
                record.save(written)
            if seen / max(1, total_windows) >= next_report:
                elapsed = time.perf_counter() - started
                log.info("%s: %d of %d windows, rows %d of %d on disk, %.0f s left", path.name, seen, total_windows,
                         written, height, elapsed / seen * (total_windows - seen))
                next_report += 0.1
        bar.close()
    if probabilities:
        os.replace(partial_probabilities, target.with_name(f"{target.stem}_probabilities.tif"))
    os.replace(partial, target)
    record.path.unlink(missing_ok=True)
    return target
