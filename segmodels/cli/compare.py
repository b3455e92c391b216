"""Is model A really better than model B on this test set? ``python -m segmodels.cli.compare <A> <B>``.

Each side is a run folder (``outputs/<date>/<time>``), a folder of run folders (a group: several seeds of one
configuration), or a quoted glob pattern matching run folders (``'multirun/<sweep>/*pretrained=True*'``: Hydra's job
folders hold commas, so patterns rather than lists). Every run must hold
``test_confusion_per_image.npz`` (train.py writes it after its test), so no inference runs again. With several runs
a side, runs are paired by their seed. Prints the mIoU difference (A - B), its 95% bootstrap interval and a p-value
(``segmodels.evaluation.statistics.paired_bootstrap``: over test images, and over the seed pairs when there are
several), says what the interval covers, and returns them as a dict.
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from segmodels.evaluation.report import PER_IMAGE_CONFUSION
from segmodels.evaluation.statistics import paired_bootstrap


def runs_of(side: str | list[Path]) -> list[Path]:
    """The run folders one side names: a run, a folder of runs, a glob pattern, or a list of run folders."""
    if isinstance(side, list):
        return [Path(p) for p in side]
    folder = Path(side)
    if (folder / PER_IMAGE_CONFUSION).is_file():
        return [folder]
    if folder.is_dir():
        runs = sorted(sub for sub in folder.iterdir() if (sub / PER_IMAGE_CONFUSION).is_file())
    else:
        runs = sorted(Path(p) for p in glob.glob(side) if (Path(p) / PER_IMAGE_CONFUSION).is_file())
    if not runs:
        raise FileNotFoundError(f"{side}: no {PER_IMAGE_CONFUSION} in it, in its subfolders or in folders it matches; "
                                f"give a run folder train.py wrote (it writes that file after its test), a folder of "
                                f"such runs, or a quoted glob pattern")
    return runs


def seed_of(run: Path) -> int | None:
    config = run / "config.yaml"
    return OmegaConf.load(config).get("seed") if config.is_file() else None


def load(run: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(run / PER_IMAGE_CONFUSION) as data:
        return data["confusion"], [str(i) for i in data["ids"]]


def pair(first: list[Path], second: list[Path]) -> list[tuple[Path, Path]]:
    """Runs matched by seed (one run a side: the two, whatever their seeds)."""
    if len(first) == 1 and len(second) == 1:
        return [(first[0], second[0])]
    by_seed = {seed_of(run): run for run in second}
    pairs = [(run, by_seed.get(seed_of(run))) for run in first]
    missing = [str(a) for a, b in pairs if b is None]
    if missing or len(first) != len(second):
        raise ValueError(f"cannot pair the runs by seed: A has seeds {sorted(map(str, map(seed_of, first)))}, B has "
                         f"{sorted(map(str, by_seed))}; give both sides the same seeds")
    return pairs


def compare(a: str | list[Path], b: str | list[Path], resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    pairs = pair(runs_of(a), runs_of(b))
    left, right = [], []
    for run_a, run_b in pairs:
        (confusion_a, ids_a), (confusion_b, ids_b) = load(run_a), load(run_b)
        if ids_a != ids_b:
            raise ValueError(f"{run_a} and {run_b} scored different test images ({len(ids_a)} and {len(ids_b)}; "
                             f"first ids {ids_a[:2]} and {ids_b[:2]}): a paired comparison needs the same test split")
        left.append(confusion_a)
        right.append(confusion_b)
    result = paired_bootstrap(left, right, resamples=resamples, seed=seed)
    return {**result, "a": [str(r) for r, _ in pairs], "b": [str(r) for _, r in pairs]}


def p_text(p_value: float, resamples: int) -> str:
    """``p = 0.0312``, or ``p < 1e-4`` when no resample crossed zero (a bootstrap p-value is never exactly 0)."""
    if p_value == 0:
        return f"p < {1 / resamples:.0e}".replace("e-0", "e-")
    return f"p = {p_value:.4f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m segmodels.cli.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="run folder, folder of runs, or a quoted glob pattern of run folders")
    parser.add_argument("b", help="the same for the other model")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap's resampling")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = compare(args.a, args.b, args.resamples, args.seed)
    print(f"mIoU(A) - mIoU(B) = {100 * result['difference']:+.2f} points, 95% CI [{100 * result['ci_low']:+.2f}, "
          f"{100 * result['ci_high']:+.2f}], {p_text(result['p_value'], result['resamples'])} ({result['images']} test "
          f"images, {result['pairs']} pair{'s' if result['pairs'] > 1 else ''} of runs, {result['resamples']} resamples)")
    print(f"the interval covers {result['covers']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
