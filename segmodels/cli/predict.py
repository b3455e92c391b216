"""Image files in, palette masks and overlays out: the work behind ``predict.py``.

The files go through Lightning's own predict loop (``trainer.predict`` with a prediction writer), so
``trainer=ddp trainer.devices=N`` (or SLURM, as for training) splits a folder between processes: Lightning's
predict sampler gives each process its own files, none twice and none left out. Large or georeferenced TIFFs are
predicted window by window into GeoTIFFs (``io.raster``); other images whole, into PNGs.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules.images import UnreadableImage, read_image
from datamodules.palette import palette_of
from segmodels.evaluation.pictures import blend
from segmodels.io.engines import inference_engine, weights_key
from segmodels.io.raster import predict_raster
from segmodels.training.segmentation_module import SegmentationModule

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
TIFF_SUFFIXES = {".tif", ".tiff"}
STREAM_PIXELS = 8192 * 8192  # stream=auto: a TIFF with more pixels than this is predicted window by window
STREAMS = ("auto", "always", "never")


def overlay(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image with each class's colour blended in (background, class 0, left as it is)."""
    rgb = image if image.ndim == 3 and image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    pictures = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    if image.dtype == np.uint8:
        pictures = pictures / 255
    else:  # 16-bit or float data: stretched between its own 0.5 and 99.5 percentiles, for the eye only
        low, high = np.percentile(rgb, [0.5, 99.5])
        pictures = ((pictures - float(low)) / max(float(high - low), 1e-12)).clamp(0, 1)
    blended = blend(pictures, torch.from_numpy(mask)[None])[0].permute(1, 2, 0)
    return Image.fromarray((blended * 255).round().clamp(0, 255).byte().numpy())


def streams(path: Path, stream: str) -> bool:
    """Whether ``path`` is predicted window by window into a GeoTIFF: ``always`` for every TIFF; ``auto`` for a
    georeferenced TIFF or one of more than ``STREAM_PIXELS`` pixels (read from its header); ``never`` for none."""
    if stream not in STREAMS:
        raise ValueError(f"stream={stream}: choose one of {', '.join(STREAMS)}")
    if stream == "never" or path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        import rasterio
    except ImportError:
        if stream == "always":
            raise ImportError("stream=always needs rasterio: pip install -e '.[geo]'") from None
        return False  # without rasterio a TIFF is read whole, as any image
    if stream == "always":
        return True
    try:
        with rasterio.open(path) as source:
            return source.crs is not None or source.height * source.width > STREAM_PIXELS
    except rasterio.errors.RasterioIOError:
        return False  # not a raster GDAL reads: read_image names the problem


class ImageFiles(Dataset):
    """One item per file: the decoded image, or only the path of a file streamed window by window, or why it could
    not be decoded (one bad photo should not stop a folder)."""

    def __init__(self, files: Sequence[Path], channels: int, stream: str) -> None:
        self.files, self.channels, self.stream = list(files), channels, stream

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        if streams(path, self.stream):
            return {"path": path, "stream": True}
        try:
            image = read_image(path, keep_single_channel=self.channels != 3)
        except UnreadableImage as error:
            return {"path": path, "skipped": error.reason[:100]}
        return {"path": path, "image": image[..., 0] if image.shape[-1] == 1 else image}


class FilePredictor(L.LightningModule):
    """Lightning's predict loop over files: the model run by the chosen engine (built once per process, the ONNX
    graph by the first process while the others wait), with the test-time options of ``models.inference``."""

    def __init__(self, module: SegmentationModule, source: Path, target: Path, engine: str = "auto",
                 providers: Sequence[str] | None = None, **options: Any) -> None:
        super().__init__()
        self.module, self.source, self.target = module, source, target
        self.engine, self.providers, self.options = engine, providers, options
        self.runner, self.engine_name = None, None

    @functools.cached_property
    def model_key(self) -> str:
        """The weights' hash a streamed raster's resume record names; hashed once, and only when a raster needs it."""
        return weights_key(self.module.model, dict(self.module.hparams), None)

    def on_predict_start(self) -> None:
        threads = None
        if self.device.type == "cpu" and self.trainer.world_size > 1:  # processes sharing one machine's cores
            threads = max(1, (os.cpu_count() or 1) // self.trainer.world_size)
            torch.set_num_threads(threads)
        if not self.trainer.is_global_zero:
            self.trainer.strategy.barrier()  # the first process writes the ONNX graph; the others then read it
        self.runner, self.engine_name = inference_engine(self.module, self.engine, self.source,
                                                         providers=self.providers, threads=threads)
        if self.trainer.is_global_zero:
            self.trainer.strategy.barrier()

    def predict_step(self, item: dict[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        options = self.options
        windows = {k: options[k] for k in ("tile", "overlap", "stride", "window_batch", "blend", "flip")}
        if options["grid"] != "mmseg" and item.get("stream"):
            raise ValueError(f"{item['path']}: grid={options['grid']} places windows over a whole image; a raster "
                             f"predicted window by window uses mmsegmentation's grid (leave grid unset)")
        if item.get("stream"):
            if options["fit"]:
                raise ValueError(f"{item['path']}: fit={options['fit']} resizes a whole image, which a raster "
                                 f"predicted window by window never is; leave fit unset or set stream=never")
            target = self.target / f"{item['path'].stem}.tif"
            predict_raster(self.runner, self.module, item["path"], target, probabilities=options["probabilities"],
                           bands=options["bands"], block=options["block"], model_key=self.model_key,
                           **{**windows, "tile": windows["tile"] or 512})
            return {**item, "written": target}
        if "image" not in item:
            return item
        mask = self.module.segment(item["image"], engine=self.runner, fit=options["fit"], grid=options["grid"],
                                   **windows)
        return {**item, "mask": mask}


class MaskWriter(BasePredictionWriter):
    """Writes each prediction as it comes: ``<name>.png`` (palette PNG of class indices) and ``<name>_overlay.jpg``;
    a streamed raster has written its own GeoTIFF. Keeps what it wrote and what it skipped, per process."""

    def __init__(self, target: Path, palette: bytes) -> None:
        super().__init__(write_interval="batch")
        self.target, self.palette = target, palette
        self.written: list[Path] = []
        self.skipped: list[str] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        path = prediction["path"]
        if "skipped" in prediction:
            self.skipped.append(f"{path.name} ({prediction['skipped']})")
            return
        if "written" in prediction:
            self.written.append(prediction["written"])
            return
        png = Image.fromarray(prediction["mask"])  # mode L; a palette turns it into P with the indices unchanged
        png.putpalette(self.palette)
        png.save(self.target / f"{path.stem}.png")
        image = prediction["image"]
        overlay(image if image.ndim == 3 else image[..., None], prediction["mask"]).save(
            self.target / f"{path.stem}_overlay.jpg", quality=90)
        self.written.append(self.target / f"{path.stem}.png")


def image_files(source: Path) -> list[Path]:
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist; give an image file or a folder of images")
    entries = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        log.info("skipped %d files that are not images (%s): %s", len(others), ", ".join(sorted(IMAGE_SUFFIXES)),
                 ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
    return files


def predict_folder(ckpt_path: str | None, input: str, output: str, flip: bool = False, tile=None,
                   overlap: float = 0.25, device: str = "auto", trust_checkpoint: bool = False, stride=None,
                   window_batch: int = 4, blend: str = "uniform", engine: str = "auto", model: str | None = None,
                   stream: str = "auto", probabilities: bool = False, bands: Sequence[int] | None = None,
                   block: int = 256, providers: Sequence[str] | None = None, fit: Sequence[int] | None = None,
                   grid: str = "mmseg", trainer: L.Trainer | None = None) -> list[Path]:
    """Masks of ``input`` (an image or a folder) from ``ckpt_path`` (a .ckpt) or ``model`` (a model folder) in
    ``output``; ``trainer`` (default: one process on ``device``) runs Lightning's predict loop. Returns the files this
    process wrote, or under several processes every file written."""
    if (ckpt_path is None) == (model is None):
        raise ValueError(f"give one of ckpt_path=<.ckpt file> or model=<model folder> (got ckpt_path={ckpt_path}, "
                         f"model={model})")
    source, target = Path(input), Path(output)
    files = image_files(source)
    module = (SegmentationModule.from_pretrained(model) if model else
              SegmentationModule.restore(ckpt_path, trust=trust_checkpoint))
    target.mkdir(parents=True, exist_ok=True)
    palette = palette_of((module.datamodule_config or {}).get("palette") or "voc").tobytes()  # the dataset's colours
    writer = MaskWriter(target, palette)
    if trainer is None:
        accelerator = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
    trainer.callbacks.append(writer)
    job = FilePredictor(module, Path(model or ckpt_path), target, engine, providers, flip=flip, tile=tile,
                        overlap=overlap, stride=stride, window_batch=window_batch, blend=blend,
                        probabilities=probabilities, bands=bands, block=block, fit=fit, grid=grid)
    loader = DataLoader(ImageFiles(files, module.hparams.in_channels, stream), batch_size=None)
    with warnings.catch_warnings():  # one file a batch: the writer needs no batch indices, Lightning warns anyway
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
        trainer.predict(job, dataloaders=loader, return_predictions=False)
    log.info("process %d of %d predicted %d files", trainer.global_rank + 1, trainer.world_size, len(writer.written))
    if writer.skipped:
        log.warning("skipped %d images that cannot be decoded: %s", len(writer.skipped), "; ".join(writer.skipped))
    if trainer.world_size > 1:
        trainer.strategy.barrier()  # every process's files are on disk
        return sorted(p for p in target.iterdir() if p.suffix in {".png", ".tif"} and "_probabilities" not in p.name)
    return writer.written
