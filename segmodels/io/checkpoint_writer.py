"""Checkpoint writes that cannot destroy the previous checkpoint and that say what went wrong.

Lightning's ``TorchCheckpointIO`` already writes a local file through a temporary one renamed into place (an
fsspec transaction), so a crash or a full disk mid-write leaves the previous file as it was. What it does not
do is say which file failed and how much room it needed: a full disk ends in a bare ``[Errno 28]``. This
plugin keeps the write and turns the failure into that message (the exception keeps its ``errno``).
"""
from __future__ import annotations

import errno
import io
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        try:
            super().save_checkpoint(checkpoint, path, storage_options)
        except OSError as error:
            code = error.errno if error.errno is not None else getattr(error.__context__, "errno", None)
            path = Path(path)
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            needed = buffer.tell() / 2**20
            free = shutil.disk_usage(path.parent).free / 2**20 if path.parent.exists() else float("nan")
            kept = f"the previous {path.name} is intact" if path.exists() else f"nothing was written to {path.name}"
            hint = ("free some space, or write checkpoints to another disk with callbacks.checkpoint.dirpath=<folder>"
                    if code in NO_ROOM else "check the folder's permissions and the file system")
            raise OSError(code, f"could not write checkpoint {path}: {error.strerror or error}; it needs {needed:.1f} MB "
                                f"and {free:.1f} MB are free in {path.parent}; {kept}. {hint[0].upper()}{hint[1:]}") from error
