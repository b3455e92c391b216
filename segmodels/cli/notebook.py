"""train.py's whole pipeline as one Python call, for notebooks: ``segmodels.fit(["decoder=att_unet"])``."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir

from .config_options import register_options
from .provenance import CHECKOUT
from .train import train

CONF = CHECKOUT / "conf"


def compose_config(overrides: Sequence[str] = (), output_dir: str | Path | None = None):
    """conf/train.yaml composed with ``overrides`` as ``python train.py <overrides>`` composes it; the run goes to
    ``output_dir`` (default ``outputs/<date>/<time>`` under the working directory, as train.py's)."""
    if not (CONF / "train.yaml").is_file():
        raise FileNotFoundError(f"{CONF / 'train.yaml'} does not exist: segmodels.fit composes the configs of a source "
                                f"checkout (pip install -e <checkout>); from a wheel, build SegmentationModule and a "
                                f"datamodule yourself and call lightning.Trainer().fit")
    output = Path(output_dir or Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")).resolve()
    register_options()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, f"output_dir={output}"])


def fit(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train, test and save exactly as ``python train.py <overrides>`` does (freeze schedule, best.ckpt, test report,
    model folder, metrics.json); returns the metrics with ``run_folder`` and ``model_folder`` added."""
    cfg = compose_config(overrides, output_dir)
    metrics = train(cfg)
    return {**metrics, "run_folder": str(cfg.output_dir), "model_folder": str(Path(cfg.output_dir) / "model")}
