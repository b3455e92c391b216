"""Train a segmentation model: ``python train.py backbone=resnet50 decoder=att_unet``."""
import hydra
from omegaconf import DictConfig

from segmodels.cli.config_options import register_options
from segmodels.cli.console import quiet_third_party
from segmodels.cli.train import train

register_options()  # each backbone's and decoder's options, which conf/backbone|decoder/<name>.yaml start from


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    quiet_third_party()
    metrics = train(cfg)
    return metrics.get(f"best/{cfg.monitor}", metrics.get(cfg.monitor))  # the value sweepers optimise


if __name__ == "__main__":
    main()
