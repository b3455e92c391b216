"""Evaluate a checkpoint: ``python evaluate.py ckpt_path=run/checkpoints/best.ckpt [split=val] [scales=[...]] [flip=true]``.

Writes metrics.json, per_image.csv, worst.png, reliability.png, confusion_matrix.csv/.png and iou.png into its
own run folder (outputs/evaluate/<date>/<time>, or hydra.run.dir=...). See segmodels/cli/evaluate.py.
"""
import hydra
from omegaconf import DictConfig, OmegaConf

from segmodels.cli.config_options import container
from segmodels.cli.console import print_evaluation, quiet_third_party
from segmodels.cli.evaluate import evaluate


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    quiet_third_party()
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") else None
    metrics = evaluate(cfg.ckpt_path, cfg.output_dir, dataset=dataset, split=cfg.split, scales=list(cfg.scales),
                       flip=cfg.flip, tile=container(cfg.tile), overlap=cfg.overlap, stride=container(cfg.stride),
                       window_batch=cfg.window_batch, blend=cfg.blend, boundary_ratio=cfg.boundary_ratio,
                       bins=cfg.calibration_bins, worst=cfg.worst, device=cfg.device, trust_checkpoint=cfg.trust_checkpoint,
                       confusion_counts=cfg.confusion_counts, model=cfg.get("model"), engine=cfg.engine,
                       providers=container(cfg.providers), fit=container(cfg.fit),
                       protocol=container(cfg.protocol_record), grid=cfg.grid)
    print_evaluation(metrics, cfg.output_dir)
    return metrics["mIoU"]


if __name__ == "__main__":
    main()
