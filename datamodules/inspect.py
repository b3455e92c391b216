"""Deprecated: ``python -m datamodules.inspect`` is ``python -m datamodules.summary`` (renamed when the package
was split by job); this name warns once and runs it."""
import warnings

from .summary import main

warnings.warn("datamodules.inspect is deprecated and will be removed; use datamodules.summary "
              "(python -m datamodules.summary)", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    raise SystemExit(main())
