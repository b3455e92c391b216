"""One command name: ``segmodels train|evaluate|predict|export|convert|compare|report|summary|search ...``.

The Hydra-composed commands run the checkout's own scripts (``train.py`` ...) as ``python <script>`` would, with the
same overrides, run folder and log names; the others call their module's ``main`` with the remaining arguments.
"""
from __future__ import annotations

import importlib
import runpy
import sys

from .provenance import CHECKOUT

SCRIPTS = ("train", "evaluate", "predict", "export", "convert")  # python <name>.py <overrides>, Hydra-composed
# imported when asked for: search needs the [search] extra (optuna), which the others do not
MODULES: dict[str, str] = {
    "compare": "segmodels.cli.compare",         # python -m segmodels.cli.compare <A> <B>
    "report": "segmodels.cli.sweep_report",     # python -m segmodels.cli.sweep_report <sweep folder>
    "summary": "datamodules.summary",           # python -m datamodules.summary <dataset root>
    "search": "segmodels.cli.search",           # python -m segmodels.cli.search <folder> --trials N <overrides>
}
USAGE = (f"usage: segmodels {{{','.join((*SCRIPTS, *MODULES))}}} [arguments]\n"
         f"  segmodels train backbone=resnet50 decoder=att_unet     (python train.py's overrides)\n"
         f"  segmodels compare outputs/<run A> outputs/<run B>       (segmodels <command> --help for the others)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in (*SCRIPTS, *MODULES):
        print((f"segmodels: unknown command '{argv[0]}'\n" if argv else "") + USAGE, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command in MODULES:
        result = importlib.import_module(MODULES[command]).main(rest)
        return result if isinstance(result, int) else 0
    script = CHECKOUT / f"{command}.py"
    if not script.is_file():
        print(f"segmodels {command}: {script} does not exist; the Hydra commands run a source checkout's scripts "
              f"(pip install -e <checkout>)", file=sys.stderr)
        return 2
    sys.argv = [str(script), *rest]  # Hydra reads its overrides, and names the job, from here
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
