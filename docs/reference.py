"""Writes reference.md, every configuration group, option and default, from conf/ at each docs build (docs/conf.py
calls ``write``), so the reference cannot go stale: the values are those Hydra composes, the notes the YAML comments."""
from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
COMPOSED = ("backbone", "decoder", "dataset", "optimizer", "scheduler", "loss", "trainer")  # one node a choice
RAW = ("callbacks", "logger", "experiment", "debug", "hparams_search", "protocol")  # files shown as written
SCRIPTS = ("evaluate", "predict")  # the other scripts' own top-level options (their groups are train.py's)


def comments(path: Path) -> dict[str, str]:
    """``key: value  # note`` at the file's top level: key -> note."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z_][\w]*):.*?\s#\s*(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def cell(value) -> str:
    text = OmegaConf.to_yaml(value).strip() if OmegaConf.is_config(value) else repr(value) if isinstance(value, str) \
        else str(value)
    return "`" + text.replace("\n", " ").replace("|", "\\|")[:120] + "`"


def group_section(group: str) -> list[str]:
    lines = [f"## `{group}`", ""]
    for path in sorted((CONF / group).glob("*.yaml")):
        name = path.stem
        header = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")
                       and not line.startswith("# @package")), "")
        lines += [f"### `{group}={name}`", "", header, ""]
        if group in RAW:
            lines += ["```yaml", path.read_text().rstrip(), "```", ""]
            continue
        node = compose(config_name="train", overrides=[f"{group}={name}"])[group]
        notes = comments(path)
        lines += ["| option | default | note |", "| --- | --- | --- |"]
        for key, value in node.items():
            lines.append(f"| `{group}.{key}` | {cell(value)} | {notes.get(key, '').replace('|', '/')} |")
        lines.append("")
    return lines


def write(target: Path) -> None:
    from segmodels.cli.config_options import register_options

    register_options()
    top = comments(CONF / "train.yaml")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["output_dir='outputs/<date>/<time>'"])
        lines = ["# Configuration reference", "",
                 "Every group of `conf/`, each choice in it and each option with its default, as `python train.py` "
                 "composes them (generated from `conf/` when the manual is built). Choose with `<group>=<choice>`, "
                 "set with `<group>.<option>=<value>`; [Configuration](configuration.md) explains how they combine.",
                 "", "## Top level (`conf/train.yaml`)", "", "| option | default | note |", "| --- | --- | --- |"]
        for key, value in cfg.items():
            if key not in (*COMPOSED, *RAW, "hydra"):
                lines.append(f"| `{key}` | {cell(value)} | {top.get(key, '').replace('|', '/')} |")
        lines.append("")
        for group in (*COMPOSED, *RAW):
            lines += group_section(group)
        for script in SCRIPTS:
            notes = comments(CONF / f"{script}.yaml")
            placeholders = {"evaluate": ["ckpt_path='<checkpoint>'", "output_dir='outputs/evaluate/<date>/<time>'"],
                            "predict": ["ckpt_path='<checkpoint>'", "input='<image or folder>'"]}[script]
            node = compose(config_name=script, overrides=placeholders)
            lines += [f"## `{script}.py` (`conf/{script}.yaml`)", "", "| option | default | note |",
                      "| --- | --- | --- |"]
            lines += [f"| `{key}` | {cell(value)} | {notes.get(key, '').replace('|', '/')} |"
                      for key, value in node.items() if key not in ("hydra", "dataset", "trainer")]
            lines.append("")
    target.write_text("\n".join(lines) + "\n")
