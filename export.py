"""Export a checkpoint: ``python export.py ckpt_path=run/checkpoints/best.ckpt format=onnx output=model.onnx``.

The graph takes float32 0-255 images of any batch and size and normalises them itself; before reporting
success the file is run in ONNX Runtime on a real image and compared with PyTorch (see segmodels/export.py).
"""
import hydra
from omegaconf import DictConfig

FORMATS = ("onnx",)


@hydra.main(config_path="conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from segmodels.console import quiet_third_party
    from segmodels.export import check_image, export_onnx
    from segmodels.module import SegmentationModule

    quiet_third_party()
    if cfg.format not in FORMATS:
        raise SystemExit(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    module = SegmentationModule.restore(cfg.ckpt_path)
    image, source = check_image(module, cfg.image)
    difference = export_onnx(module, cfg.output, image, opset=cfg.opset, fp16=cfg.fp16)
    print(f"wrote {cfg.output} (input 'image': float32 N x {module.hparams.in_channels} x H x W, 0-255; output "
          f"'logits'); ONNX Runtime matches PyTorch on {source} {image.shape[1]}x{image.shape[0]}: max |difference| "
          f"{difference:.2e}")


if __name__ == "__main__":
    main()
