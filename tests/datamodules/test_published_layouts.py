"""ADE20K, Cityscapes and COCO-Stuff as their authors publish them, on miniature replicas (tests/helpers/replicas.py):
one reader configured per layout (conf/dataset/), their label remappings, and the refusal of half-prepared folders."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from datamodules.layouts import CITYSCAPES_TRAIN_IDS
from tests.helpers import compose_train, replicas


def datamodule(name: str, data_dir, *overrides: str):
    cfg = compose_train([f"dataset={name}", f"data_dir={data_dir}", "backbone.pretrained=false", *overrides])
    return instantiate(cfg.dataset, num_workers=0)


def test_ade20k_reads_the_split_folders_and_reduces_label_zero(tmp_path):
    root = replicas.ade20k(tmp_path / "ADEChallengeData2016")
    data = datamodule("ade20k", tmp_path)
    data.setup("fit")
    train = data.dataset("train")
    assert train.ids == ["ADE_train_00000001", "ADE_train_00000002", "ADE_train_00000003"]
    assert data.dataset("val").ids[0] == "ADE_val_00000001"
    stored = np.array(Image.open(root / "annotations" / "training" / "ADE_train_00000002.png"))
    read = train.read(1)[1]
    expected = np.where(stored == 0, 255, stored.astype(int) - 1)  # "other" ignored, the rest one down
    assert np.array_equal(read, expected) and set(np.unique(read)) == {0, 1, 149, 255}
    assert data.num_classes == 150 and data.class_names[0] == "wall" and data.class_names[-1] == "flag"


def test_cityscapes_train_ids_or_label_ids_through_the_official_table_give_the_same_masks(tmp_path):
    replicas.cityscapes(tmp_path / "cityscapes")
    prepared = datamodule("cityscapes", tmp_path)
    raw = datamodule("cityscapes", tmp_path, "dataset.label_ids=true")
    prepared.setup("fit"), raw.setup("fit")
    assert prepared.dataset("train").ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019"]
    assert raw.dataset("train").masks[0].name == "aachen_000000_000019_gtFine_labelIds.png"
    for index in range(2):
        assert np.array_equal(prepared.dataset("val").read(index)[1], raw.dataset("val").read(index)[1])
    assert set(np.unique(raw.dataset("train").read(0)[1])) <= {CITYSCAPES_TRAIN_IDS[i] for i in (7, 8, 26, 33)} | {255}
    assert len(prepared.class_names) == 19


def test_a_half_prepared_cityscapes_is_refused_naming_the_missing_step(tmp_path):
    replicas.cityscapes(tmp_path / "cityscapes", train_ids=False)
    with pytest.raises(FileNotFoundError, match="missing files.*labelTrainIds.*csCreateTrainIdLabelImgs.*"
                                                "dataset.label_ids=true"):
        datamodule("cityscapes", tmp_path).setup("fit")
    shutil.rmtree(tmp_path / "cityscapes" / "leftImg8bit" / "val")
    with pytest.raises(FileNotFoundError, match="image folder .*leftImg8bit/val does not exist.*csCreateTrainIdLabelImgs"):
        datamodule("cityscapes", tmp_path, "dataset.label_ids=true").setup("fit")


def test_coco_stuff_keeps_its_train_ids_and_the_usual_checks_apply(tmp_path):
    root = replicas.coco_stuff164k(tmp_path / "coco_stuff164k")
    data = datamodule("coco_stuff164k", tmp_path)
    data.setup("fit")
    assert data.dataset("train").ids == ["000000000009", "000000000025", "000000000041"]
    assert set(np.unique(data.dataset("train").read(0)[1])) == {0, 91, 170, 255}
    assert len(data.class_names) == 171
    # the checks of every layout: a val image byte-identical to a train image is refused
    shutil.copy(root / "images" / "train2017" / "000000000009.jpg", root / "images" / "val2017" / "000000000009.jpg")
    with pytest.raises(ValueError, match="000000000009"):
        datamodule("coco_stuff164k", tmp_path).setup("fit")
