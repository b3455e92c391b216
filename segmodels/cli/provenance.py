"""Where a run's numbers came from: the code (git commit, and whether the tree had uncommitted changes), the
command, the library versions, the device, the seed and a fingerprint of the data. Written into metrics.json, the
checkpoints and the model folder, so a figure can be traced back and evaluate.py can tell other data apart."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("segmodels", "torch", "torchvision", "lightning", "timm", "hydra-core", "albumentations", "numpy")
CHECKOUT = Path(__file__).resolve().parents[2]


def git_state(folder: Path = CHECKOUT) -> dict[str, Any]:
    """The commit of ``folder``'s checkout and whether tracked files differ from it; None for an install that is
    not a git checkout (a wheel) or a machine without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def device_name(accelerator: str) -> str:
    if accelerator == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()} x {torch.cuda.device_count()}"
    return f"{accelerator}: {platform.processor() or platform.machine()}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; the platform's word elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_record() -> dict[str, str | int | None]:
    """What decides a CPU run's last digits: the same seed gives other figures where torch picks other kernels
    (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512 ...), so two figures can be told apart by it."""
    return {"model": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def run_provenance(seed: int, accelerator: str, data: dict[str, Any]) -> dict[str, Any]:
    """The record a run carries; ``data`` is its datamodule's ``fingerprint()``."""
    return {"git": git_state(), "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), "versions": versions(),
            "device": device_name(accelerator), "cpu": cpu_record(), "seed": seed, "data": data}
