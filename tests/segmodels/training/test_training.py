"""The train function that `python train.py` runs, on the real configs."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from segmodels.cli.train import train
from tests.helpers import assert_scores_match_confusion, compose_train, tiny_overrides


def test_default_composition(tmp_path):
    cfg = compose_train([f"output_dir={tmp_path}"])
    assert cfg.backbone.name == "efficientnet_lite0" and cfg.backbone.pretrained
    assert cfg.decoder.name == "unet" and cfg.dataset._target_.endswith("DemoSegmentationDataModule")
    assert cfg.callbacks.freeze.unfreeze_at_epoch > 0 and cfg.monitor == "val/mIoU"


def test_fast_dev_run_through_the_train_function(tiny_demo, tmp_path):
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "trainer.fast_dev_run=true"))
    metrics = train(cfg)
    assert_scores_match_confusion(metrics)
    assert OmegaConf.load(tmp_path / "config.yaml").backbone.name == "efficientnet_lite0"


@pytest.mark.slow
def test_a_real_run_writes_checkpoints_logs_and_metrics(tiny_demo, tmp_path):
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "trainer.max_epochs=2", "callbacks.freeze.unfreeze_at_epoch=1",
                                        "log_images=2"))
    metrics = train(cfg)
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = accumulator.Tags()
    assert {"train/loss_step", "val/loss", "val/mIoU", "lr-AdamW/backbone", "lr-AdamW/decoder"} <= set(tags["scalars"])
    assert "val/predictions" in tags["images"]
    frozen = [e.value for e in accumulator.Scalars("backbone_frozen")]
    assert frozen == [1.0, 0.0]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/mIoU"] == pytest.approx(metrics["test/mIoU"])
    assert set(saved["test/iou"]) == {"background", "circle", "square", "triangle"}
    assert_scores_match_confusion(saved)
    assert "val/mean_dice" in tags["scalars"]
    rows = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == ["background", "circle", "square", "triangle"] and len(rows) == 5
    assert sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) > 0
    for picture in ("confusion_matrix.png", "iou.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_frozen_means_frozen_then_unfrozen_trains(tiny_demo, tmp_path):
    """Backbone weights and BatchNorm statistics are unchanged over a frozen epoch, changed after."""
    import lightning as L
    from hydra.utils import instantiate

    from segmodels.cli.train import build_module
    from segmodels.training.callbacks import FreezeBackbone

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path))
    module = build_module(cfg)
    before = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in module.model.decoder.state_dict().items()}
    datamodule = instantiate(cfg.dataset)

    def fit(epochs: int) -> None:
        trainer = L.Trainer(max_epochs=epochs, callbacks=[FreezeBackbone(unfreeze_at_epoch=1)], logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu", num_sanity_val_steps=0)
        trainer.fit(module, datamodule=datamodule)

    fit(1)
    after_frozen = module.model.backbone.state_dict()
    assert all(torch.equal(before[k], after_frozen[k]) for k in before)
    assert any(not torch.equal(decoder_before[k], v) for k, v in module.model.decoder.state_dict().items())
    fit(2)  # a fresh trainer from epoch 0 again: one frozen epoch, then one unfrozen
    changed = module.model.backbone.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before if k.endswith("weight"))
    assert any(not torch.equal(before[k], changed[k]) for k in before if k.endswith("running_mean"))


def test_frozen_stages_stay_frozen_after_the_unfreeze(tiny_demo, tmp_path):
    import lightning as L
    from hydra.utils import instantiate

    from segmodels.cli.train import build_module
    from segmodels.training.callbacks import FreezeBackbone

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone=resnet18", "backbone.pretrained=false"))
    module = build_module(cfg)
    before = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    datamodule = instantiate(cfg.dataset)
    trainer = L.Trainer(max_epochs=1, callbacks=[FreezeBackbone(unfreeze_at_epoch=0, frozen_stages=2)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(module, datamodule=datamodule)
    after = module.model.backbone.state_dict()
    early = [k for k in before if k.startswith(("conv1.", "bn1.", "layer1."))]  # stage 1: the stem; 2: layer1
    assert len(early) > 10 and all(torch.equal(before[k], after[k]) for k in early)  # weights and BN statistics
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])
    with pytest.raises(ValueError, match="frozen_stages=5: the backbone has 5 levels"):
        module.model.early_stages(5)


def test_class_weights_weight_the_training_loss():
    import torch.nn.functional as F

    from segmodels import SegmentationModule

    module = SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=2, pretrained=False,
                                decoder_kwargs={"decoder_channels": [8, 8, 8, 8]}, class_weights=[1.0, 3.0]).eval()
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 2, (2, 32, 32))}
    batch["mask"][0, :4] = 255
    with torch.no_grad():
        expected = F.cross_entropy(module(batch["image"]), batch["mask"], weight=torch.tensor([1.0, 3.0]), ignore_index=255)
        assert torch.allclose(module.training_step(batch, 0), expected)
    with pytest.raises(ValueError, match="1 class_weights given for num_classes=2"):
        SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=2, pretrained=False, class_weights=[1.0])


@pytest.mark.slow
def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_demo, tmp_path):
    # the backbone's learning rate explodes once it is unfrozen in epoch 1
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "trainer.max_epochs=3", "callbacks.freeze.unfreeze_at_epoch=1",
                                       "optimizer.backbone_lr_factor=1e12", "scheduler=constant"))
    with pytest.raises(FloatingPointError, match=r"NaN or Inf at global step \d+ \(epoch \d+\)") as error:
        train(cfg)
    stopped_epoch = int(str(error.value).split("(epoch ")[1].split(")")[0])
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert 1 <= stopped_epoch and last["epoch"] < stopped_epoch
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_init_from_a_checkpoint_loads_what_matches_and_reinitialises_the_rest(tiny_demo, tmp_path):
    import lightning as L

    from segmodels import SegmentationModule
    from segmodels.io.init_from import load_matching

    source = SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=21, pretrained=False)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(source)
    trainer.save_checkpoint(tmp_path / "voc.ckpt")
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path / "run", f"model.init_from={tmp_path / 'voc.ckpt'}",
                                       "backbone.pretrained=false", "trainer.fast_dev_run=true"))
    train(cfg)  # the 4-class demo model starts from the 21-class one
    from segmodels.cli.train import build_module

    target = build_module(cfg)
    report = load_matching(target, tmp_path / "voc.ckpt")
    assert report["other_shape"] == ["model.decoder.classifier.weight (21, 64, 1, 1) -> (4, 64, 1, 1)",
                                     "model.decoder.classifier.bias (21,) -> (4,)"]
    assert torch.equal(target.model.backbone.net.conv_stem.weight, source.model.backbone.net.conv_stem.weight)
    with pytest.raises(FileNotFoundError, match="model.init_from=.*nope.ckpt: no such checkpoint file"):
        load_matching(target, tmp_path / "nope.ckpt")


class StopAfterEpoch(__import__("lightning").Callback):
    """Interrupts a run at the end of one epoch, as a preempted job would be."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [0, 1])  # during the frozen phase, and after the unfreeze
def test_a_resumed_run_repeats_an_uninterrupted_one(tiny_demo, tmp_path, stop_after):
    import lightning as L
    from hydra.utils import instantiate

    from segmodels.cli.train import build_module
    from segmodels.training.callbacks import ExactResume, FreezeBackbone

    def run(folder, callbacks, ckpt_path=None):
        # DeepLabV3+ has dropout, so every draw of the global RNG shows; debug=fast loads without workers, where
        # each epoch's iter(DataLoader) used to draw its seed from it at other moments in a resumed run
        cfg = compose_train(tiny_overrides(tiny_demo, tmp_path / folder, "backbone.pretrained=false",
                                           "decoder=deeplabv3plus", "decoder.decoder_channels=16",
                                           "decoder.skip_channels=8"))
        assert cfg.dataset.num_workers == 0 and cfg.decoder.dropout > 0
        L.seed_everything(cfg.seed, workers=True)
        module = build_module(cfg)
        datamodule = instantiate(cfg.dataset)
        trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                            default_root_dir=str(tmp_path / folder), deterministic=True,
                            callbacks=[FreezeBackbone(unfreeze_at_epoch=1), ExactResume(), *callbacks])
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        return trainer, module

    _, straight = run("straight", [])
    interrupted, _ = run("interrupted", [StopAfterEpoch(stop_after)])
    checkpoint = interrupted.checkpoint_callback.last_model_path or interrupted.checkpoint_callback.best_model_path
    trainer, resumed = run("resumed", [], ckpt_path=checkpoint)
    assert trainer.current_epoch == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # the claim is exactness
    assert resumed.model.backbone_frozen is False


@pytest.mark.parametrize("setting", [{"accumulate_grad_batches": 2}, {"precision": "bf16-mixed"}])
def test_freezing_holds_with_gradient_accumulation_and_mixed_precision(tiny_demo, tmp_path, setting):
    import lightning as L
    from hydra.utils import instantiate

    from segmodels.cli.train import build_module
    from segmodels.training.callbacks import FreezeBackbone

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone.pretrained=false", "decoder.decoder_channels=[8,16,16,16]"))
    module = build_module(cfg)
    datamodule = instantiate(cfg.dataset)
    before = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[FreezeBackbone(unfreeze_at_epoch=-1)], limit_val_batches=1, **setting)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step >= 1
    assert all(torch.equal(before[k], v) for k, v in module.model.backbone.state_dict().items())


@pytest.mark.slow
def test_deterministic_runs_with_workers_give_bit_identical_weights(tiny_demo, tmp_path):
    """trainer.deterministic=true: deterministic kernels (and cuBLAS's workspace on CUDA, set by Lightning), loaders
    seeded by their own generators and augmentation seeded per sample, so two runs with worker processes agree to
    the bit."""
    def run(folder):
        cfg = compose_train(tiny_overrides(tiny_demo, tmp_path / folder, "trainer.deterministic=true",
                                           "dataset.num_workers=2", "trainer.max_epochs=2",
                                           "callbacks.freeze.unfreeze_at_epoch=1"))
        train(cfg)
        return torch.load(tmp_path / folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)

    try:
        first, second = run("first"), run("second")
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)  # Lightning sets it for the whole process
    assert first["global_step"] == second["global_step"] > 0
    assert first["state_dict"].keys() == second["state_dict"].keys()
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])


def test_a_plain_trainer_freezes_as_train_py_does_unless_given_its_own_schedule(tiny_demo):
    """The module brings its freeze schedule (configure_callbacks); a trainer's own FreezeBackbone wins."""
    import lightning as L

    from datamodules import DemoSegmentationDataModule
    from segmodels import FreezeBackbone, SegmentationModule

    def fit(module, epochs: int, callbacks=()) -> None:
        data = DemoSegmentationDataModule(str(tiny_demo), backbone="resnet18", num_workers=0, crop_size=32, batch_size=4)
        L.Trainer(max_epochs=epochs, callbacks=list(callbacks), logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, accelerator="cpu", num_sanity_val_steps=0,
                  limit_train_batches=2, limit_val_batches=1).fit(module, datamodule=data)

    def backbone(module) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in module.model.backbone.state_dict().items() if k.endswith("weight")}

    module = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=4, pretrained=False)
    before = backbone(module)
    fit(module, 1)
    assert all(torch.equal(before[k], v) for k, v in backbone(module).items())  # frozen epoch 0
    fit(module, 2)
    assert any(not torch.equal(before[k], v) for k, v in backbone(module).items())  # unfrozen from epoch 1
    own = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=4, pretrained=False)
    before = backbone(own)
    fit(own, 1, [FreezeBackbone(unfreeze_at_epoch=0)])
    assert any(not torch.equal(before[k], v) for k, v in backbone(own).items())
    never = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=4, pretrained=False, freeze=None)
    before = backbone(never)
    fit(never, 1)
    assert any(not torch.equal(before[k], v) for k, v in backbone(never).items())


def test_validation_and_test_score_the_same_images_alike(tiny_demo):
    """One metric path: validating and testing on one split give the same mIoU to the last bit."""
    import lightning as L

    from datamodules import DemoSegmentationDataModule
    from segmodels import SegmentationModule

    module = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=4, pretrained=False).eval()
    data = DemoSegmentationDataModule(str(tiny_demo), backbone="resnet18", num_workers=0, test_split="val")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    validated = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.test(module, datamodule=data, verbose=False)
    assert isinstance(module.val_scores_metric, type(module.test_scores_metric))
    logged = torch.tensor(module.test_scores["mIoU"], dtype=torch.float64).float().item()  # logging stores float32
    assert validated["val/mIoU"] == logged and validated["val/mIoU"] > 0
