"""Predict masks: ``python predict.py ckpt_path=run/checkpoints/best.ckpt input=photos/ output=masks/``.

Writes, at each image's own size, ``<name>.png`` (a palette PNG of class indices, never JPEG) and
``<name>_overlay.jpg`` (the prediction blended over the image). ``flip=true`` adds flip test-time
augmentation; ``tile=512`` slides a 512 x 512 window over larger images.
"""
import hydra
from omegaconf import DictConfig

from segmodels.cli.config_options import container
from segmodels.cli.predict import predict_folder


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    written = predict_folder(cfg.ckpt_path, cfg.input, cfg.output, flip=cfg.flip, tile=container(cfg.tile),
                             overlap=cfg.overlap, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint,
                             stride=container(cfg.stride), window_batch=cfg.window_batch, blend=cfg.blend)
    print(f"wrote {len(written)} masks to {cfg.output}")


if __name__ == "__main__":
    main()
