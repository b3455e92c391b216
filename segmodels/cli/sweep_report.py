"""Compare the jobs of a sweep: ``python -m segmodels.cli.sweep_report multirun/2026-11-23/10-00-00``.

Reads each job folder's ``config.yaml`` (or Hydra's ``.hydra/config.yaml``) and ``metrics.json``, and writes into
the sweep folder ``report.md`` and ``report.csv`` (one row per job), the groups of jobs that differ only by seed or
fold with the mean, standard deviation, n and 95% confidence interval of each score (``report.md``, ``groups.csv``,
``groups.json``, and ``report.png`` with error bars), and, when the sweep varies ``dataset.train_fraction`` or
``dataset.train_count``, ``learning_curve.png``. ``--baseline <group>`` adds a paired bootstrap of every group
against that one. A job without metrics is listed as failed, with the last error line of its log, never dropped.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from segmodels.cli.compare import compare  # absolute: also run as the old python -m segmodels.sweep_report
from segmodels.evaluation.plots import new_figure
from segmodels.evaluation.statistics import interval

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


REPLICATES = ("seed", "dataset.fold")  # overrides that repeat a configuration rather than change it
SIZES = ("dataset.train_fraction", "dataset.train_count")  # the x axis of a learning curve
SCORES = ("best val mIoU", "test mIoU")


def overrides_of(row: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in row["overrides"].split() if "=" in item)


def group_of(row: dict, leave_out: tuple[str, ...] = REPLICATES) -> str:
    """The job's overrides without the replicate ones: jobs that differ only by seed or fold share it."""
    kept = {k: v for k, v in overrides_of(row).items() if k.lstrip("+~") not in leave_out and not k.startswith("hydra.")}
    return " ".join(f"{k}={v}" for k, v in sorted(kept.items())) or "(no overrides)"


def shared_overrides(rows: list[dict]) -> tuple[str, ...]:
    """Overrides every job of the sweep gives the same value (data_dir=..., trainer.max_epochs=8): they name no group."""
    sets = [set(overrides_of(row).items()) for row in rows]
    return tuple(sorted(k for k, _ in set.intersection(*sets))) if sets else ()


def summarize_groups(rows: list[dict]) -> list[dict]:
    """Mean, standard deviation, n and 95% confidence interval of each score per group (finished jobs only)."""
    groups: dict[str, list[dict]] = {}
    shared = shared_overrides(rows)
    for row in rows:
        if row["status"] == "ok":
            groups.setdefault(group_of(row, REPLICATES + shared), []).append(row)
    summary = []
    for name, members in groups.items():
        entry: dict = {"group": name, "n": len(members), "jobs": [m["job"] for m in members]}
        for score in SCORES:
            for key, value in interval([m.get(score) for m in members]).items():
                if key != "n":
                    entry[f"{score} {key}"] = value
        summary.append(entry)
    return summary


def percent(mean: float, low: float, high: float) -> str:
    if mean != mean:
        return ""
    return f"{100 * mean:.2f}" + ("" if low != low else f" [{100 * low:.2f}, {100 * high:.2f}]")


def write_groups(sweep: Path, groups: list[dict], baseline: str | None) -> None:
    if baseline is not None:
        by_name = {g["group"]: g for g in groups}
        if baseline not in by_name:
            raise ValueError(f"--baseline {baseline!r} is not a group of this sweep; groups: {sorted(by_name)}")
        reference = [sweep / job for job in by_name[baseline]["jobs"]]
        for group in groups:
            if group["group"] != baseline:
                group["vs baseline"] = compare([sweep / job for job in group["jobs"]], reference)
    (sweep / "groups.json").write_text(json.dumps(groups, indent=2))
    columns = ["group", "n", *(f"{s} mean [95% CI] (%)" for s in SCORES), "test mIoU std (%)"]
    if baseline is not None:
        columns.append(f"test mIoU - baseline (%) [95% CI], p (paired bootstrap vs {baseline})")
    lines = ["", "## Groups (jobs that differ only by seed or fold)", "", "| " + " | ".join(columns) + " |",
             "|" + " --- |" * len(columns)]
    for g in groups:
        cells = [g["group"], str(g["n"]), *(percent(g[f"{s} mean"], g[f"{s} ci_low"], g[f"{s} ci_high"]) for s in SCORES),
                 "" if g["test mIoU std"] != g["test mIoU std"] else f"{100 * g['test mIoU std']:.2f}"]
        if baseline is not None:
            versus = g.get("vs baseline")
            cells.append("baseline" if versus is None else f"{100 * versus['difference']:+.2f} [{100 * versus['ci_low']:+.2f}, "
                         f"{100 * versus['ci_high']:+.2f}], p = {versus['p_value']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    with (sweep / "report.md").open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    with (sweep / "groups.csv").open("w", newline="") as handle:
        fields = [k for k in groups[0] if k not in ("jobs", "vs baseline")] if groups else ["group"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(groups)


def plot_groups(sweep: Path, groups: list[dict], failed: int) -> None:
    """Test mIoU per group with its 95% confidence interval over seeds (no bar where n = 1): horizontal bars, so
    long group names sit on their own rows instead of overlapping under the bars."""
    longest = max((len(g["group"]) for g in groups), default=10)
    figure, axis = new_figure(figsize=(min(16.0, 4.0 + 0.065 * longest), max(2.5, 0.45 * len(groups) + 1.5)))
    means = [100 * g["test mIoU mean"] for g in groups]
    errors = [[0 if g["n"] < 2 else 100 * (g["test mIoU mean"] - g["test mIoU ci_low"]) for g in groups],
              [0 if g["n"] < 2 else 100 * (g["test mIoU ci_high"] - g["test mIoU mean"]) for g in groups]]
    axis.barh(range(len(groups)), means, xerr=errors, capsize=4, color="tab:blue")
    axis.set_yticks(range(len(groups)), [f"{g['group']} (n={g['n']})" for g in groups], fontsize=8)
    axis.invert_yaxis()  # the report's order, top to bottom
    axis.set_xlabel("test mIoU (%), mean and 95% CI")
    axis.set_title(f"{sweep.name}: {sum(g['n'] for g in groups)} jobs in {len(groups)} groups"
                   + (f", {failed} failed" if failed else ""), fontsize=9)
    figure.tight_layout()
    figure.savefig(sweep / "report.png", dpi=150)


def plot_learning_curve(sweep: Path, rows: list[dict]) -> bool:
    """Test mIoU against the training data used (log axis), a line per configuration, 95% CI over seeds: drawn
    when the sweep varies dataset.train_fraction or dataset.train_count."""
    finished = [r for r in rows if r["status"] == "ok"]
    sized = [r for r in finished if any(k in overrides_of(r) for k in SIZES)]
    if not sized:
        return False
    shared = shared_overrides(rows)
    lines: dict[str, dict[float, list[float]]] = {}
    for row in sized:
        size = next(float(v) for k, v in overrides_of(row).items() if k in SIZES)
        lines.setdefault(group_of(row, REPLICATES + SIZES + shared), {}).setdefault(size, []).append(row["test mIoU"])
    figure, axis = new_figure(figsize=(4.5, 3.4))
    for name, points in sorted(lines.items()):
        sizes = sorted(points)
        stats = [interval(points[s]) for s in sizes]
        means = [100 * s["mean"] for s in stats]
        spread = [0 if s["n"] < 2 else 100 * (s["ci_high"] - s["mean"]) for s in stats]
        axis.errorbar(sizes, means, yerr=spread, marker="o", capsize=3, label=name)
    axis.set_xscale("log", base=2)
    ticks = sorted({size for points in lines.values() for size in points})
    axis.set_xticks(ticks, [f"{size:g}" for size in ticks])
    axis.minorticks_off()
    key = next(k for k in SIZES if any(k in overrides_of(r) for r in sized))
    axis.set_xlabel("share of the training split" if key.endswith("fraction") else "training images")
    axis.set_ylabel("test mIoU (%)")
    axis.set_title("learning curve: mean and 95% CI over seeds", fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(sweep / "learning_curve.png", dpi=150)
    return True


def write_report(sweep: Path, baseline: str | None = None) -> list[dict]:
    rows = [describe(job) for job in job_folders(sweep)]
    if not rows:
        raise FileNotFoundError(f"no job folders (with a .hydra folder) in {sweep}; give a multirun folder")
    with (sweep / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: cell(r.get(c)) for c in COLUMNS} for r in rows)
    # report.md in one unit, percent, as its group table (report.csv keeps train.py's fractions)
    headers = [f"{c} (%)" if c in SCORES else c for c in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(percent(r.get(c), float("nan"), float("nan")) if c in SCORES and r.get(c) is not None
                                 else cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    (sweep / "report.md").write_text("\n".join(lines) + "\n")
    groups = summarize_groups(rows)
    write_groups(sweep, groups, baseline)
    if groups:
        plot_groups(sweep, groups, sum(r["status"] != "ok" for r in rows))
    plot_learning_curve(sweep, rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segmodels.cli.sweep_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--baseline", help="a group (as report.md names it): every other group is compared with it by "
                                           "a paired bootstrap over test images")
    args = parser.parse_args(argv)
    write_report(args.sweep, args.baseline)
    print((args.sweep / "report.md").read_text())


if __name__ == "__main__":
    main()
