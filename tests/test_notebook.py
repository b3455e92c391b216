"""The README's notebook snippet, verbatim, on the demo data: train.py's pipeline from Python, then a plain Trainer."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, subprocess_env


def notebook_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## In a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_notebook_snippet_runs_verbatim(tmp_path):
    check = "\nprint('RUN', run['run_folder'], run['test/mIoU'], mask.shape, sorted(run))\n"
    result = subprocess.run([sys.executable, "-c", notebook_snippet() + check], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RUN"))
    run = tmp_path / "outputs"
    folders = [p for p in run.glob("*/*") if (p / "metrics.json").is_file()]
    assert len(folders) == 1 and str(folders[0]) in line and "(64, 64)" in line
    for name in ("checkpoints/best.ckpt", "model/model.safetensors", "confusion_matrix.csv", "test_confusion_per_image.npz"):
        assert (folders[0] / name).is_file(), name
