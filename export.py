"""Export a checkpoint: ``python export.py ckpt_path=run/checkpoints/best.ckpt format=onnx output=model.onnx``.

The graph takes float32 0-255 images of any batch and size and normalises them itself; before reporting
success the file is run in ONNX Runtime on a real image and compared with PyTorch (see segmodels/io/onnx.py).
"""
import hydra
from omegaconf import DictConfig

from segmodels.cli.console import quiet_third_party
from segmodels.cli.export import export


@hydra.main(config_path="conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_third_party()
    print(export(cfg.ckpt_path, cfg.output, cfg.image, format=cfg.format, opset=cfg.opset, fp16=cfg.fp16,
                 trust_checkpoint=cfg.trust_checkpoint))


if __name__ == "__main__":
    main()
