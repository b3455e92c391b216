"""A hyper-parameter search on a current Optuna (4 or later), beside Hydra's optuna sweeper (which pins optuna < 3):

    python -m segmodels.cli.search multirun/search --trials 20 backbone=resnet50
    segmodels search multirun/search --trials 20 backbone=resnet50 'optimizer.lr=tag(log, interval(1e-4, 1e-2))'

Each trial is train.py's pipeline (``segmodels.fit``) in ``<folder>/<trial number>/`` with the sampled values as
overrides; the value is the best ``monitor`` (val/mIoU), maximised as ``monitor_mode`` says. The search space is
``conf/hparams_search/optuna.yaml``'s (``hydra.sweeper.params``) unless overrides in Hydra's sweep syntax give
their own: ``interval(a, b)`` (``tag(log, ...)`` for a log scale; integers stay integers), ``choice(...)`` and
``range(...)``. The study lives in ``<folder>/optuna.db`` (SQLite): the same command again loads the finished trials
and runs ``--trials`` more, with the TPE sampler seeded by ``--seed``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import OmegaConf

from .notebook import CONF, compose_config
from .train import train

SPACE = CONF / "hparams_search" / "optuna.yaml"


def default_space() -> dict[str, str]:
    """The search space of ``hparams_search=optuna`` (one definition for both paths)."""
    return {str(k): str(v) for k, v in OmegaConf.load(SPACE).hydra.sweeper.params.items()}


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """An Optuna distribution for one sweep override (interval, choice or range), or an error naming it."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        return optuna.distributions.CategoricalDistribution(list(override.sweep_iterator()))
    raise ValueError(f"{override.input_line}: give interval(a, b), tag(log, interval(a, b)), choice(...) or range(...)")


def split(overrides: Sequence[str]) -> tuple[dict[str, optuna.distributions.BaseDistribution], list[str]]:
    """(searched parameters, fixed overrides): the default space, replaced key by key by sweep overrides."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    defaults = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in default_space().items()])
    searched = {override.key_or_group: override for override in defaults}
    fixed = []
    for override, line in zip(parsed, overrides):
        if override.is_sweep_override():
            searched[override.key_or_group] = override
        else:
            searched.pop(override.key_or_group, None)  # a fixed value wins over the default space
            fixed.append(line)
    return {key: distribution(override) for key, override in searched.items()}, fixed


def search(folder: str | Path, overrides: Sequence[str] = (), trials: int = 20, seed: int = 0,
           study_name: str = "search") -> optuna.Study:
    """Run ``trials`` more trials of the study kept in ``folder``/optuna.db; returns the study."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    space, fixed = split(overrides)
    probe = compose_config(fixed, folder / "probe")  # the monitor and its direction, as the runs will have them
    direction = "maximize" if probe.monitor_mode == "max" else "minimize"
    study = optuna.create_study(study_name=study_name, storage=f"sqlite:///{folder / 'optuna.db'}", load_if_exists=True,
                                direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    for _ in range(trials):
        trial = study.ask(space)
        cfg = compose_config([*fixed, *(f"{key}={value}" for key, value in trial.params.items())],
                             folder / str(trial.number))
        try:
            metrics = train(cfg)
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, metrics.get(f"best/{cfg.monitor}", metrics.get(cfg.monitor)))
    return study


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m segmodels.cli.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="where the trials and optuna.db go (the same folder again resumes the study)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides; sweep syntax for searched values")
    parser.add_argument("--trials", type=int, default=20, help="trials to run now")
    parser.add_argument("--seed", type=int, default=0, help="of the TPE sampler")
    args = parser.parse_intermixed_args(argv)  # options before, between or after the overrides
    study = search(args.folder, args.overrides, args.trials, args.seed)
    best = study.best_trial
    print(f"{len(study.trials)} trials in {Path(args.folder) / 'optuna.db'}; best: trial {best.number}, value "
          f"{best.value:.4f}, " + " ".join(f"{k}={v}" for k, v in best.params.items()))
    return {"best_value": best.value, "best_params": best.params, "trials": len(study.trials)}


if __name__ == "__main__":
    main()
