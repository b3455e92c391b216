"""The JSON a benchmark leaves: the machine it ran on, its arguments and its rows."""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def write_results(args: argparse.Namespace, results: list[dict], device: torch.device) -> None:
    machine = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
