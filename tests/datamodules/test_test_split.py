"""The test figure is on held-out images when the data has them, and says so when it cannot be."""
from __future__ import annotations

import json
import shutil

import pytest

from datamodules import VOCSegmentationDataModule, make_demo_dataset
from tests.helpers import compose_train, tiny_overrides


def module_for(root, **kwargs) -> VOCSegmentationDataModule:
    return VOCSegmentationDataModule(str(root), num_classes=4, backbone="resnet18", num_workers=0, crop_size=32, **kwargs)


def test_test_txt_is_read_when_it_exists_and_val_stands_in_only_with_a_note(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", splits={"train": 4, "val": 2, "test": 2}, size=32)
    held_out = module_for(root)
    assert held_out.splits["test"] == "test" and not held_out.test_on_val and held_out.test_note is None
    held_out.setup("test")
    assert held_out.dataset("test").ids == ["test_0000", "test_0001"]

    (root / "ImageSets/Segmentation/test.txt").unlink()
    fallback = module_for(root)
    assert fallback.splits["test"] == "val" and fallback.test_on_val
    assert "no split 'test' exists" in fallback.test_note and "optimistic" in fallback.test_note
    fallback.setup("test")
    assert fallback.dataset("test").ids == ["val_0000", "val_0001"]

    chosen = module_for(root, test_split="val")  # a published dataset's convention, still stated
    assert chosen.test_on_val and "dataset.test_split=val" in chosen.test_note
    assert module_for(root, test_split=None).splits["test"] is None


def test_split_fractions_give_three_disjoint_seeded_parts(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", splits={"all": 20}, size=32)
    shutil.rmtree(root / "ImageSets")
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    dm = module_for(root, split_fractions=fractions)
    parts = {split: dm.split_ids(split) for split in fractions}
    assert [len(parts[s]) for s in fractions] == [12, 4, 4] and not dm.test_on_val
    assert sorted(sum(parts.values(), [])) == [f"all_{i:04d}" for i in range(20)]
    assert module_for(root, split_fractions=fractions).split_ids("test") == parts["test"]
    assert module_for(root, split_fractions=fractions, split_seed=1).split_ids("test") != parts["test"]
    two_way = module_for(root, split_fractions={"train": 0.8, "val": 0.2})
    assert two_way.splits["test"] == "val" and "test share" in two_way.test_note


@pytest.mark.slow
def test_a_run_states_where_its_test_figure_comes_from_and_keeps_its_split(tmp_path):
    from segmodels.cli.train import train

    root = make_demo_dataset(tmp_path / "demo", splits={"all": 12}, size=32)
    shutil.rmtree(root / "ImageSets")
    (root / "class_names.txt").write_text("background\ncircle\nsquare\ntriangle\n")
    output = tmp_path / "run"
    metrics = train(compose_train(tiny_overrides(
        root, output, "dataset=custom", "dataset.image_ext=.jpg", "dataset.num_workers=0", "dataset.crop_size=32",
        "dataset.split_fractions={train: 0.5, val: 0.5}")))
    assert metrics["test_split"] == "val" and metrics["test_is_selection_split"] is True
    assert "optimistic" in metrics["test_note"]
    assert json.loads((output / "metrics.json").read_text())["test_note"] == metrics["test_note"]
    assert "optimistic" in (output / "model/README.md").read_text()
    written = {p.stem: p.read_text().split() for p in (output / "splits").glob("*.txt")}
    assert set(written) == {"train", "val"} and len(written["train"]) == 6
    again = module_for(root, split_dir=str(output / "splits"))  # the partition read back from the run folder
    again.setup("fit")
    assert again.dataset("train").ids == written["train"] and again.dataset("val").ids == written["val"]


@pytest.mark.slow
def test_the_documented_labelme_command_trains_on_a_labelme_export(tmp_path):
    """docs/data.md's labelme line, verbatim but for the folder and a smoke run's length, on labelme2voc's layout."""
    import re
    import shlex
    import subprocess
    import sys

    from tests.helpers import ROOT, subprocess_env

    root = make_demo_dataset(tmp_path / "labelme_export", splits={"all": 14}, size=32)
    shutil.rmtree(root / "ImageSets")
    (root / "SegmentationClass").rename(root / "SegmentationClassPNG")
    (root / "class_names.txt").write_text("_background_\ncircle\nsquare\ntriangle\n")
    line = next(line for line in (ROOT / "docs/data.md").read_text().splitlines() if "labelme_export" in line)
    command = re.search(r"python train\.py .*", line).group(0).replace("/path/to/labelme_export", str(root))
    arguments = shlex.split(command)[2:] + ["debug=fast", "dataset.crop_size=32", "dataset.num_workers=0"]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *arguments], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "outputs").glob("*/*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_split"] == "test" and metrics["test_is_selection_split"] is False
    parts = {p.stem: p.read_text().split() for p in (run / "splits").glob("*.txt")}
    assert sorted(len(ids) for ids in parts.values()) == [2, 2, 10] and "test mIoU" in result.stdout
