"""Compare the jobs of a sweep: ``python -m segmodels.cli.sweep_report multirun/2026-11-23/10-00-00``.

Reads each job folder's ``config.yaml`` (or Hydra's ``.hydra/config.yaml``) and ``metrics.json``, and
writes ``report.md``, ``report.csv`` and ``report.png`` (test mIoU per job) into the sweep folder.
A job without metrics is listed as failed, with the last error line of its log, never dropped.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from segmodels.evaluation.plots import new_figure

COLUMNS = ["job", "backbone", "decoder", "overrides", "best val mIoU", "test mIoU", "parameters (M)",
           "train time (s)", "GPU memory (MB)", "status"]


def job_folders(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=lambda p: p.name)


def last_error(job: Path) -> str:
    for log in sorted(job.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if "error" in line.lower()]
        if lines:
            return lines[-1].strip()[-300:]
    return "no metrics.json and no error in the job's log (killed?)"


def describe(job: Path) -> dict:
    config_file = job / "config.yaml" if (job / "config.yaml").is_file() else job / ".hydra" / "config.yaml"
    config = OmegaConf.load(config_file)
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = " ".join(OmegaConf.load(overrides_file)) if overrides_file.is_file() else ""
    row = {"job": job.name, "backbone": config.backbone.name, "decoder": config.decoder.name, "overrides": overrides}
    metrics_file = job / "metrics.json"
    if not metrics_file.is_file():
        return {**row, "status": f"failed: {last_error(job)}"}
    metrics = json.loads(metrics_file.read_text())
    best = next((v for k, v in metrics.items() if k.startswith("best/")), None)
    return {
        **row,
        "best val mIoU": best,
        "test mIoU": metrics.get("test/mIoU"),
        "parameters (M)": metrics.get("parameters", 0) / 1e6 if metrics.get("parameters") else None,
        "train time (s)": metrics.get("train_seconds"),
        "GPU memory (MB)": metrics.get("peak_gpu_memory_mb"),
        "status": "ok",
    }


def cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(sweep: Path) -> list[dict]:
    rows = [describe(job) for job in job_folders(sweep)]
    if not rows:
        raise FileNotFoundError(f"no job folders (with a .hydra folder) in {sweep}; give a multirun folder")
    with (sweep / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: cell(r.get(c)) for c in COLUMNS} for r in rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    (sweep / "report.md").write_text("\n".join(lines) + "\n")
    figure, axis = new_figure(figsize=(max(4.0, 0.6 * len(rows) + 2), 4))
    values = [100 * (r.get("test mIoU") or 0.0) for r in rows]
    axis.bar(range(len(rows)), values, color=["tab:blue" if r["status"] == "ok" else "tab:red" for r in rows])
    axis.set_xticks(range(len(rows)), [f"{r['backbone']}\n{r['decoder']}\n{r['job'][:12]}" for r in rows], fontsize=7)
    axis.set_ylabel("test mIoU (%)")
    axis.set_title(f"{sweep.name}: {sum(r['status'] == 'ok' for r in rows)} of {len(rows)} jobs finished")
    figure.tight_layout()
    figure.savefig(sweep / "report.png", dpi=100)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segmodels.cli.sweep_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a Hydra multirun folder")
    args = parser.parse_args(argv)
    write_report(args.sweep)
    print((args.sweep / "report.md").read_text())


if __name__ == "__main__":
    main()
