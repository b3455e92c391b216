"""Predict masks: ``python predict.py ckpt_path=run/checkpoints/best.ckpt input=photos/ output=masks/``.

Writes, at each image's own size, ``<name>.png`` (a palette PNG of class indices, never JPEG) and
``<name>_overlay.jpg`` (the prediction blended over the image); a GeoTIFF (or a TIFF too large for memory) gives
``<name>.tif``, georeferenced as its source, predicted window by window. ``flip=true`` adds flip test-time
augmentation; ``tile=512`` slides a 512 x 512 window over larger images; ``engine=`` picks what runs the model;
``trainer=ddp trainer.devices=4`` shares a folder between four processes.
"""
import hydra
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from segmodels.cli.config_options import container
from segmodels.cli.predict import predict_folder


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    settings = {"accelerator": cfg.device} if cfg.device != "auto" else {}
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, enable_model_summary=False,
                          **settings)
    written = predict_folder(cfg.ckpt_path, cfg.input, cfg.output, flip=cfg.flip, tile=container(cfg.tile),
                             overlap=cfg.overlap, trust_checkpoint=cfg.trust_checkpoint, stride=container(cfg.stride),
                             window_batch=cfg.window_batch, blend=cfg.blend, engine=cfg.engine, model=cfg.model,
                             stream=cfg.stream, probabilities=cfg.probabilities, bands=container(cfg.bands),
                             block=cfg.block, providers=container(cfg.providers), fit=container(cfg.fit),
                             grid=cfg.grid, trainer=trainer)
    rank_zero_only(print)(f"wrote {len(written)} masks to {cfg.output}")


if __name__ == "__main__":
    main()
