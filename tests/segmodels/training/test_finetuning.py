"""The fine-tuning tools foundation models need, on ViTs and CNNs alike: layer-wise learning-rate decay, LoRA,
weight EMA and gradient checkpointing, each through train.py's config as a user sets it."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from segmodels import SegmentationModule, build_model
from segmodels.cli.evaluate import evaluate
from segmodels.cli.train import build_module, train
from segmodels.models.lora import merge_lora
from segmodels.training.optimizers import build_optimizer_from_settings
from tests.helpers import compose_train, tiny_overrides

TWO_BLOCKS = {"depth": 2, "adapter_channels": 32}
ADAMW = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01}


def rates(model, **settings) -> dict[str, float]:
    optimizer = build_optimizer_from_settings(model, {**ADAMW, **settings}, None)
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


def test_layer_decay_on_a_vit_goes_block_by_block_and_keeps_the_adapter_and_decoder_at_the_full_rate():
    model = build_model("vit_small_patch16_224", "linear", 3, pretrained=False, backbone_kwargs=TWO_BLOCKS)
    got = rates(model, layer_decay=0.5)
    # three layers: embeddings, block 0, block 1 -> 1e-3 x 0.5^3, 0.5^2, 0.5^1; the adapter is the decoder's
    assert got == pytest.approx({"backbone_layer0": 1.25e-4, "backbone_layer1": 2.5e-4, "backbone_layer2": 5e-4,
                                 "decoder": 1e-3})
    optimizer = build_optimizer_from_settings(model, {**ADAMW, "layer_decay": 0.5}, None)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    vit = dict(model.backbone.vit.named_parameters())
    assert {id(vit["pos_embed"]), id(vit["patch_embed.proj.weight"])} <= groups["backbone_layer0"]
    assert id(vit["blocks.1.mlp.fc2.weight"]) in groups["backbone_layer2"]
    assert all(id(p) in groups["decoder"] for p in model.backbone.adapter.parameters())
    every = [i for ids in groups.values() for i in ids]
    assert sorted(every) == sorted(id(p) for p in model.parameters())  # each parameter once


def test_layer_decay_on_a_cnn_goes_stage_by_stage_and_combines_with_the_backbone_factor():
    model = build_model("resnet18", "unet", 3, pretrained=False)
    got = rates(model, layer_decay=0.5, backbone_lr_factor=0.1, no_decay_norm_bias=True)
    for i in range(5):  # five stages (stem, layer1..4): 1e-3 x 0.1 x 0.5^(5 - i)
        assert got[f"backbone_layer{i}"] == pytest.approx(1e-4 * 0.5 ** (5 - i))
        assert got[f"backbone_layer{i}_no_decay"] == got[f"backbone_layer{i}"]
    assert got["decoder"] == pytest.approx(1e-3)
    layers = model.backbone.layers()
    assert any(p is model.backbone.conv1.weight for p in layers[0])
    assert any(p is model.backbone.layer4[1].conv2.weight for p in layers[4])
    with pytest.raises(ValueError, match=r"optimizer.layer_decay=1.5: give a factor in \(0, 1\]"):
        rates(model, layer_decay=1.5)


def test_vit_embeddings_and_tokens_skip_weight_decay_with_norms_and_biases():
    model = build_model("vit_small_patch16_224", "linear", 3, pretrained=False, backbone_kwargs=TWO_BLOCKS)
    optimizer = build_optimizer_from_settings(model, {**ADAMW, "no_decay_norm_bias": True}, None)
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.backbone.vit.pos_embed) in no_decay and id(model.backbone.vit.cls_token) in no_decay


def dinov2_file(tmp_path: Path) -> Path:
    """A two-block DINOv2 state dict saved here: the 'pretrained' weights LoRA must leave untouched."""
    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=2, num_classes=0)
    path = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    return path


def test_lora_through_train_py_trains_only_the_adapters_and_the_checkpoint_restores_and_exports(tiny_demo, tmp_path):
    import onnx
    from safetensors.torch import load_file

    from segmodels.cli.export import export_onnx

    weights = dinov2_file(tmp_path)
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone=dinov2_small", f"backbone.weights={weights}",
                                       "backbone.depth=2", "backbone.adapter_channels=32", "backbone.lora_rank=4",
                                       "decoder=fpn", "decoder.pyramid_channels=16", "decoder.decoder_channels=16",
                                       "callbacks.freeze.unfreeze_at_epoch=0", "optimizer.lr=0.01"))
    module = build_module(cfg)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".adapter." in n or n.startswith("model.decoder.") for n in trainable)
    assert train(cfg)["test/mIoU"] >= 0.0

    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state, pretrained = checkpoint["state_dict"], load_file(str(weights))
    base = {k: v for k, v in state.items() if k.startswith("model.backbone.vit.")}
    for key, value in base.items():  # every pretrained tensor bit-identical after training
        if ".lora_" not in key:
            assert torch.equal(value, pretrained[key.removeprefix("model.backbone.vit.").replace(".base_layer.", ".")])
    assert any(".lora_B." in k and v.abs().sum() > 0 for k, v in base.items())  # the adapters learned (B starts at 0)

    # the checkpoint alone rebuilds the model (no weights file, no download) with the same logits
    weights.unlink()
    restored = SegmentationModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    x = torch.randn(1, 3, 45, 52)
    with torch.no_grad():
        expected = restored(x)
    merged = merge_lora(restored.model)
    assert not any("lora" in k or "base_layer" in k for k in merged.state_dict())
    with torch.no_grad():
        assert torch.allclose(merged(x), expected, atol=1e-5)
    # export.py's path: a ViT needs torch.export (timm resizes position embeddings with an antialiased bicubic)
    image = (torch.rand(45, 52, 3) * 255).to(torch.uint8).numpy()
    assert export_onnx(restored, tmp_path / "merged.onnx", image) < 1e-3
    assert {p.key: p.value for p in onnx.load(str(tmp_path / "merged.onnx")).metadata_props}["exporter"] == "dynamo"


@pytest.mark.parametrize("bn_eval", [True, False])
def test_lora_on_a_cnn_adapts_its_convolutions_and_keeps_batchnorm_fixed(bn_eval):
    model = build_model("resnet18", "unet", 3, pretrained=False, backbone_kwargs={"lora_rank": 2})
    model.frozen_stages, model.frozen_bn_eval = 0, bn_eval  # what FreezeBackbone sets (callbacks.freeze.bn_eval)
    model.unfreeze_backbone()  # what FreezeBackbone does after its frozen epochs: the base weights stay fixed
    model.train()
    means = {n: b.clone() for n, b in model.backbone.named_buffers() if n.endswith("running_mean")}
    model(torch.randn(2, 3, 32, 32))  # a training forward pass
    assert len(means) == 20 and all(torch.equal(b, means[n]) for n, b in model.backbone.named_buffers() if n in means)
    backbone = {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert backbone and all(".lora_" in n for n in backbone)
    assert "layer1.0.conv1.lora_A.default.weight" in backbone
    assert not model.backbone.bn1.training and model.decoder.training
    with pytest.raises(ValueError, match="backbone.lora_rank=-1: give a positive rank"):
        build_model("resnet18", "unet", 3, pretrained=False, backbone_kwargs={"lora_rank": -1})


@pytest.mark.parametrize("name,kwargs", [("resnet18", {}), ("mobilenet_v2", {}), ("efficientnet_lite0", {}),
                                         ("vit_small_patch16_224", TWO_BLOCKS)])
def test_gradient_checkpointing_gives_the_same_gradients(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, "fpn", 3, pretrained=False, backbone_kwargs=kwargs,
                        decoder_kwargs={"pyramid_channels": 16, "decoder_channels": 16, "dropout": 0.0})
    model.train()
    for module in model.modules():  # the two passes must see the same batch statistics: no momentum drift
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    x = torch.randn(2, 3, 64, 64)

    calls = []  # forward calls of the backbone's layers: checkpointing recomputes them during backward
    for layer in model.backbone.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.register_forward_hook(lambda *_: calls.append(1))

    def gradients() -> tuple[dict[str, torch.Tensor], int]:
        model.zero_grad()
        calls.clear()
        model(x).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    plain, plain_calls = gradients()
    model.backbone.set_grad_checkpointing(True)
    checkpointed, checkpointed_calls = gradients()
    assert checkpointed_calls > plain_calls  # it ran: checkpointed layers were computed again in the backward pass
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6, rtol=1e-4) for k in plain)


def test_ema_and_gradient_checkpointing_and_layer_decay_through_train_py(tiny_demo, tmp_path):
    """ema.decay: the saved best checkpoint holds the average (the raw weights beside it), and testing and the model
    folder use it: the test scores are evaluate.py's on best.ckpt, and <run>/model holds best.ckpt's state_dict."""
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "ema.decay=0.5", "backbone.grad_checkpointing=true",
                                       "optimizer.layer_decay=0.75", "trainer.max_epochs=2",
                                       "callbacks.freeze.unfreeze_at_epoch=0"))
    metrics = train(cfg)
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    average, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert average.keys() == current.keys()
    assert any(not torch.equal(average[k], current[k]) for k in average if k.endswith("weight"))
    shipped = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert shipped.keys() == {k.removeprefix("model.") for k in average}
    assert all(torch.equal(shipped[k.removeprefix("model.")], v) for k, v in average.items())
    scores = evaluate(metrics["best_checkpoint"], tmp_path / "evaluation")
    assert metrics["test/mIoU"] == scores["mIoU"] and metrics["test/iou"] == scores["iou"]
    # the learning rates the run used (LearningRateMonitor -> TensorBoard): stage i of 5 at lr x 0.75^(5 - i)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    first = {tag.rpartition("/")[2]: events.Scalars(tag)[0].value for tag in events.Tags()["scalars"]
             if tag.startswith("lr-AdamW/")}
    decoder = first["decoder"]
    assert [first[f"backbone_layer{i}"] / decoder for i in range(5)] == pytest.approx([0.75 ** (5 - i) for i in range(5)])
    with pytest.raises(ValueError, match=r"ema.decay=1.5: give a factor in \(0, 1\)"):
        from segmodels.cli.train import build_callbacks
        build_callbacks(compose_train(tiny_overrides(tiny_demo, tmp_path, "ema.decay=1.5")))
