"""The console script as a user types it: ``segmodels <command> ...``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import subprocess_env

SEGMODELS = Path(sys.executable).parent / "segmodels"  # pip install -e . puts it beside the interpreter


def segmodels(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(SEGMODELS), *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_one_command_name_runs_the_scripts_and_the_tools(tiny_demo, tmp_path):
    assert SEGMODELS.is_file(), "install the project (pip install -e .) for its console script"
    trained = segmodels("train", "debug=fast", f"dataset.root={tiny_demo}", "dataset.num_workers=0", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = next((tmp_path / "outputs").glob("*/*"))
    assert (run / "train.log").is_file() and (run / "metrics.json").is_file()  # the job named as python train.py names it
    summary = segmodels("summary", str(tiny_demo), cwd=tmp_path)
    assert summary.returncode == 0 and "roles: train reads train, val reads val, test reads test" in summary.stdout
    compared = segmodels("compare", str(run), str(run), "--resamples", "200", cwd=tmp_path)
    assert compared.returncode == 0 and "mIoU(A) - mIoU(B) = +0.00 points" in compared.stdout
    unknown = segmodels("fit", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown command 'fit'" in unknown.stderr and "segmodels train" in unknown.stderr
