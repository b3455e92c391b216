"""Optimiser groups, learning-rate schedules and the linear scaling rule."""
from __future__ import annotations

import lightning as L
import pytest

from datamodules import VOCSegmentationDataModule
from segmodels import SegmentationModule
from segmodels.optim import SCHEDULES


def module(**optimizer) -> SegmentationModule:
    return SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=4, pretrained=False,
                              decoder_kwargs={"decoder_channels": [8, 8, 8, 8]},
                              optimizer={"name": "sgd", "lr": 0.01, "weight_decay": 0.1, **optimizer},
                              scheduler={"name": "constant"})


def fitted_optimizer(tiny_demo, m: SegmentationModule):
    data = VOCSegmentationDataModule(str(tiny_demo), num_classes=4, mean=m.mean, std=m.std, crop_size=32, batch_size=4,
                                     num_workers=0, test_split=None)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)
    trainer.fit(m, datamodule=data)
    return trainer.optimizers[0]


def test_groups_exist_from_the_start_and_norms_and_biases_can_skip_weight_decay(tiny_demo):
    m = module(no_decay_norm_bias=True, backbone_lr_factor=0.1, momentum=0.9, nesterov=True)
    optimizer = fitted_optimizer(tiny_demo, m)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"backbone", "backbone_no_decay", "decoder", "decoder_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.001) and groups["decoder"]["lr"] == pytest.approx(0.01)
    assert groups["decoder_no_decay"]["weight_decay"] == 0.0 and groups["decoder"]["weight_decay"] == 0.1
    assert all(p.ndim <= 1 for g in ("backbone_no_decay", "decoder_no_decay") for p in groups[g]["params"])
    covered = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in m.parameters()) and optimizer.defaults["nesterov"]


def test_linear_scaling_rule_scales_by_the_global_batch(tiny_demo):
    optimizer = fitted_optimizer(tiny_demo, module(scale_lr_by_batch=16))
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["decoder"] == pytest.approx(0.01 * 4 / 16)


def test_schedules():
    poly = SCHEDULES.get("poly")(100, power=1.0)
    assert [poly(0), poly(50), poly(100)] == pytest.approx([1.0, 0.5, 0.0])
    cosine = SCHEDULES.get("cosine")(110, warmup_steps=10)
    assert [cosine(0), cosine(9), cosine(10), cosine(60), cosine(110)] == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    step = SCHEDULES.get("step")(100, milestones=(0.5, 0.8), gamma=0.1)
    assert [step(49), step(50), step(80)] == pytest.approx([1.0, 0.1, 0.01])
