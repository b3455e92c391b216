"""One progress bar for long work outside training, from the library Lightning's bar uses (tqdm)."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    """``items`` with a bar on a terminal; silent when output goes to a file or a pipe (logs, CI)."""
    return tqdm(items, desc=desc, unit=unit, total=total, disable=not sys.stderr.isatty(), leave=False)
