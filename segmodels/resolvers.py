"""OmegaConf resolvers the configs use; registered before Hydra composes (train.py imports this first)."""
from __future__ import annotations

import os

from omegaconf import OmegaConf


def srun_step_or(default: str) -> str:
    """The run folder's name: under ``srun`` every task of a step gets the same one, ``slurm-<job>.<step>``
    (the time would differ between tasks and give each rank its own folder); elsewhere ``default``."""
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    return f"slurm-{job}.{step}" if job and step else default


def register() -> None:
    if not OmegaConf.has_resolver("srun_step_or"):
        OmegaConf.register_new_resolver("srun_step_or", srun_step_or)


register()
