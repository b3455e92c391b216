"""Import a published checkpoint once: ``python convert.py source=<transformers folder> output=<model folder>``.

Writes this project's model folder (model.safetensors, config.json, README.md naming the source, its licence and
the published figure where known); ``SegmentationModule.from_pretrained``, evaluate.py ``model=`` and train.py
``model.init_from=`` read it without transformers.
"""
import hydra
from omegaconf import DictConfig

from segmodels.cli.console import quiet_third_party
from segmodels.cli.convert import convert, describe


@hydra.main(config_path="conf", config_name="convert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_third_party()
    print(describe(convert(cfg.source, cfg.output, cfg.name), cfg.output))


if __name__ == "__main__":
    main()
