"""Train a segmentation model: ``python train.py backbone=resnet50 decoder=att_unet``."""
import hydra
from omegaconf import DictConfig

import segmodels.resolvers  # noqa: F401  (resolvers the run folder's name uses)


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from segmodels.training import train

    metrics = train(cfg)
    return metrics.get(f"best/{cfg.monitor}", metrics.get(cfg.monitor))  # the value sweepers optimise


if __name__ == "__main__":
    main()
