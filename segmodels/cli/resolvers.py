"""OmegaConf resolvers the configs use; registered before Hydra composes (train.py imports this first)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import OmegaConf


def slurm_or(default: str) -> str:
    """The run folder's name: under SLURM, ``slurm-<job>.<step>`` inside ``srun`` (every task of a step gets the
    same one; the time would differ between tasks and give each rank its own folder) or ``slurm-<job>`` in a batch
    script; a requeued job keeps its id, so it finds its folder (and ``ckpt_path=auto`` its checkpoint) again.
    Elsewhere ``default``."""
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if not job:
        return default
    return f"slurm-{job}.{step}" if step else f"slurm-{job}"


def fit_filename(name: str, limit: int = 200) -> str:
    """A sweep job's folder name that the file system takes: Linux refuses names over 255 bytes, which a
    grid over a few long overrides reaches. Longer names keep their first bytes and end in a digest of the
    whole name, so different jobs still get different folders (config.yaml inside says exactly what ran)."""
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:12]
    return encoded[: limit - len(digest) - 1].decode(errors="ignore") + "~" + digest


def in_folder(path: str) -> str:
    """``path`` after creating its folder: an optuna study's SQLite file in a sweep folder that Hydra's launcher
    creates only later, when the first trial starts (SQLite creates files, not folders)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


RESOLVERS = {"slurm_or": slurm_or, "fit_filename": fit_filename, "in_folder": in_folder}


def register() -> None:
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register()
