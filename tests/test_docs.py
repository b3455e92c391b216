"""Docs that cannot rot: every ``python train.py|evaluate.py|predict.py|export.py ...`` command shown in the README
and docs/ composes with Hydra (no training), so a renamed option fails here instead of in a reader's terminal."""
from __future__ import annotations

import importlib.util
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.helpers import ROOT

SCRIPTS = {"train.py": "train", "evaluate.py": "evaluate", "predict.py": "predict", "export.py": "export",
           "convert.py": "convert"}
COMMAND = re.compile(r"python3? (train|evaluate|predict|export|convert)\.py((?: +[^ `#|]+)*)")
PLACEHOLDER = re.compile(r"<[^>]*>")  # <date>/<time>, <image or folder>


def shown_commands() -> list[tuple[str, str, str]]:
    """(where, script, arguments) for every command in README.md and docs/*.md."""
    found = []
    pages = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "reference.md"]  # generated from conf/
    for page in [ROOT / "README.md", *pages]:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            following = number
            while line.endswith("\\") and following < len(lines):  # a command continued on the next line
                line, following = line[:-1] + " " + lines[following].strip(), following + 1
            for match in COMMAND.finditer(line):
                found.append((f"{page.relative_to(ROOT)}:{number}", f"{match.group(1)}.py", match.group(2)))
    return found


COMMANDS = shown_commands()


def override_sets(arguments: str) -> list[list[str]]:
    """The overrides of one command; a multirun (``-m``) gives one list per job of its sweep."""
    words = shlex.split(PLACEHOLDER.sub("X", arguments))
    words = [w[1:-1] if w.startswith("[") and w.endswith("]") and "=" in w else w for w in words]  # [option=...]
    multirun = "-m" in words or "--multirun" in words
    overrides = [w for w in words if w not in ("-m", "--multirun")]
    if not multirun:
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]


def test_the_docs_show_commands_of_every_script():
    assert {script for _, script, _ in COMMANDS} == set(SCRIPTS)
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where, script, arguments", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_command_composes(where, script, arguments):
    if "hparams_search=optuna" in arguments and importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.skip("Hydra's optuna sweeper is the [optuna] extra (optuna < 3), not in the test environment")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for overrides in override_sets(arguments):
            compose(config_name=SCRIPTS[script], overrides=overrides, return_hydra_config=True)
