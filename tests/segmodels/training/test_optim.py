"""Optimiser groups, learning-rate schedules and the linear scaling rule."""
from __future__ import annotations

import lightning as L
import pytest

from datamodules import VOCSegmentationDataModule
from segmodels import SegmentationModule
from segmodels.training.optimizers import SCHEDULES


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


def test_a_swins_position_tables_skip_weight_decay_with_the_norms():
    from segmodels import build_model
    from segmodels.training.optimizers import parameter_groups

    backbone = build_model("swin_tiny_patch4_window7_224", "linear", 3, pretrained=False, backbone_kwargs={
        "model_kwargs": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}).backbone
    decay, no_decay = parameter_groups({"backbone": list(backbone.named_parameters())}, {"backbone": 0.1}, 0.05, True)
    tables = [p for name, p in backbone.named_parameters() if name.endswith("relative_position_bias_table")]
    assert len(tables) == 4 and all(p.ndim == 2 for p in tables)
    assert {id(p) for p in tables} <= {id(p) for p in no_decay["params"]} and no_decay["weight_decay"] == 0.0


def test_linear_scaling_rule_scales_by_the_global_batch(tiny_demo):
    optimizer = fitted_optimizer(tiny_demo, module(scale_lr_by_batch=16))
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["decoder"] == pytest.approx(0.01 * 4 / 16)


def test_schedules():
    poly = SCHEDULES.get("poly")(100, power=1.0)
    assert [poly(0), poly(50), poly(100)] == pytest.approx([1.0, 0.5, 0.0])
    cosine = SCHEDULES.get("cosine")(110, warmup_steps=10)
    assert [cosine(0), cosine(9), cosine(10), cosine(60), cosine(110)] == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    to_min = SCHEDULES.get("poly")(100, power=1.0, min_factor=0.01)
    assert [to_min(0), to_min(50), to_min(100)] == pytest.approx([1.0, 0.505, 0.01])
    step = SCHEDULES.get("step")(100, milestones=(0.5, 0.8), gamma=0.1)
    assert [step(49), step(50), step(80)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize("experiment, facts", [
    ("unet_vgg16_voc", {"optimizer.name": "adam", "optimizer.lr": 1e-4, "optimizer.weight_decay": 0.0,
                        "scheduler.name": "cosine", "scheduler.min_factor": 0.01, "dataset.crop_size": 512,
                        "dataset.batch_size": 2, "callbacks.freeze.unfreeze_at_epoch": 50, "trainer.max_epochs": 100,
                        "backbone.name": "vgg16", "decoder.name": "unet"}),
    ("unet_resnet50_voc", {"backbone.name": "resnet50", "decoder.name": "unet", "callbacks.freeze.unfreeze_at_epoch": 50,
                           "optimizer.lr": 1e-4}),
    ("att_unet_vgg16_voc", {"backbone.name": "vgg16", "decoder.name": "att_unet", "trainer.max_epochs": 100}),
    ("fcn32s_vgg16_voc", {"optimizer.name": "sgd", "optimizer.lr": 1e-10, "optimizer.momentum": 0.99,
                          "optimizer.weight_decay": 5e-4, "loss.reduction": "sum", "dataset.batch_size": 1,
                          "trainer.max_steps": 100000, "callbacks.freeze.unfreeze_at_epoch": 0, "decoder.fc_kernel": 7,
                          "decoder.name": "fcn32s", "scheduler.name": "constant"}),
    ("fcn16s_vgg16_voc", {"decoder.name": "fcn16s", "optimizer.lr": 1e-12, "decoder.fc_channels": 4096}),
    ("fcn8s_vgg16_voc", {"decoder.name": "fcn8s", "optimizer.lr": 1e-14, "loss.reduction": "sum"}),
    ("deeplabv3plus_resnet50_voc", {"backbone.name": "resnet50", "backbone.output_stride": 8, "decoder.name": "deeplabv3plus",
                                    "decoder.decoder_channels": 512, "decoder.skip_channels": 48, "dataset.crop_size": 512,
                                    "dataset.batch_size": 16, "optimizer.name": "sgd", "optimizer.lr": 0.01,
                                    "optimizer.momentum": 0.9, "optimizer.weight_decay": 5e-4, "scheduler.name": "poly",
                                    "scheduler.power": 0.9, "scheduler.min_factor": 0.01, "trainer.max_steps": 40000,
                                    "callbacks.freeze.unfreeze_at_epoch": 0}),
])
def test_seed_recipes_compose_with_their_published_settings(experiment, facts):
    from omegaconf import OmegaConf

    from tests.helpers import compose_train

    cfg = compose_train([f"experiment={experiment}"])
    for key, value in facts.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.dataset.root.endswith("VOCdevkit/VOC2012") and cfg.dataset.train_split == "train_aug"


@pytest.mark.slow
def test_the_fcn32s_recipe_trains_on_whole_images_with_a_summed_loss(tiny_demo, tmp_path):
    from segmodels.cli.train import train
    from tests.helpers import compose_train, tiny_overrides

    cfg = compose_train(["experiment=fcn32s_vgg16_voc", "dataset=demo", "backbone.pretrained=false",
                         *tiny_overrides(tiny_demo, tmp_path, "trainer.fast_dev_run=true", "trainer.max_steps=-1")])
    assert list(cfg.dataset.train_transforms) == [] and cfg.dataset.batch_size == 4  # tiny_overrides sets 4
    metrics = train(cfg)
    assert metrics["test/loss"] > 100  # summed over 48 x 48 pixels, not averaged
