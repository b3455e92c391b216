"""Parity, the proof of an import: transformers builds the model from a config with random weights, saves it with its
own save_pretrained, we import the folder and compare outputs on an odd input size (no download anywhere)."""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from segmodels import SegmentationModule  # noqa: E402
from segmodels.io.transformers_import import ArchitectureMismatch  # noqa: E402

HEIGHT, WIDTH = 67, 93


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every BatchNorm statistic and affine parameter moved off its initial value, so a swapped or dropped one shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and module.weight is not None:
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()


def save_segformer(folder, reduce_labels: bool = True, labels: int = 5):
    config = transformers.SegformerConfig(  # MiT-B0's encoder, a narrow head
        hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=64, num_labels=labels,
        id2label={i: f"thing{i}" for i in range(labels)}, label2id={f"thing{i}": i for i in range(labels)})
    torch.manual_seed(0)
    model = randomised(transformers.SegformerForSemanticSegmentation(config))
    model.save_pretrained(folder)
    processor = transformers.SegformerImageProcessor(do_resize=False, do_reduce_labels=reduce_labels,
                                                     image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3])
    processor.save_pretrained(folder)
    return model, processor


def source_probabilities(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The source's class probabilities at the input size: its logits upsampled as post_process_semantic_segmentation
    does (bilinear, align_corners=False), then softmax."""
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    return F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False).softmax(1)


def assert_parity_with_the_image_processor(module, model, processor, spread: bool = False) -> None:
    """Class probabilities within 1e-4 of the source's on an odd-sized image, and ``segment()`` equal to the source's
    image processor + model + ``post_process_semantic_segmentation``; ``spread``: the source's map holds several
    classes, so the comparison is not between two near-uniform maps."""
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape[-2:] == (HEIGHT, WIDTH)
    expected = source_probabilities(model, pixel_values)
    assert not spread or expected.argmax(1).unique().numel() > 1
    with torch.no_grad():
        ours = module(pixel_values).softmax(1)
    assert (ours - expected).abs().max() < 1e-4
    with torch.no_grad():
        reference = processor.post_process_semantic_segmentation(model(pixel_values=pixel_values),
                                                                 target_sizes=[(HEIGHT, WIDTH)])[0]
    assert np.array_equal(module.segment(image), reference.numpy())


def test_segformer_imports_with_parity(tmp_path):
    model, processor = save_segformer(tmp_path / "segformer")
    module = SegmentationModule.from_pretrained(str(tmp_path / "segformer"))
    assert module.hparams.backbone == "mit_b0" and module.class_names == [f"thing{i}" for i in range(5)]
    assert module.mean == (0.4, 0.5, 0.6) and module.std == (0.2, 0.25, 0.3)
    assert module.imported["dataset"]["reduce_zero_label"] is True
    assert_parity_with_the_image_processor(module, model, processor)


STAGES = ["stage1", "stage2", "stage3", "stage4"]
SOURCE_BACKBONES = {  # small configs of each backbone a published UperNet or Mask2Former has
    "convnext": lambda: transformers.ConvNextConfig(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 2, 1],
                                                    out_features=STAGES),
    "resnet": lambda: transformers.ResNetConfig(depths=[1, 1, 1, 1], hidden_sizes=[32, 64, 128, 256],
                                                embedding_size=64, layer_type="bottleneck", out_features=STAGES),
    # two blocks a stage (the second shifted); windows of 3 so that 67 x 93 pads at stage 1 (17 x 24) and 3 (5 x 6)
    "swin": lambda: transformers.SwinConfig(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=3,
                                            out_features=STAGES),
}


def randomised_tables(model: torch.nn.Module) -> None:
    """Swin's relative position biases off their near-zero start, so a wrong one shows."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "relative_position_bias_table" in name:
                parameter.normal_(0, 1)


def labelled(labels: int) -> dict:
    return {"num_labels": labels, "id2label": {i: f"thing{i}" for i in range(labels)},
            "label2id": {f"thing{i}": i for i in range(labels)}}


def save_upernet(folder, labels: int = 5, backbone: str = "convnext", seed: int = 0):
    config = transformers.UperNetConfig(backbone_config=SOURCE_BACKBONES[backbone](), hidden_size=32,
                                        auxiliary_channels=16, **labelled(labels))
    torch.manual_seed(0)
    model = randomised(transformers.UperNetForSemanticSegmentation(config), seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_scale" in name:  # off their 1e-6 start, so the blocks count
                parameter.uniform_(0.5, 1.5)
        model.decode_head.classifier.weight.mul_(50)  # logits far apart: a wrong tensor moves the probabilities
    randomised_tables(model)
    model.save_pretrained(folder)
    processor = transformers.SegformerImageProcessor(do_resize=False, do_reduce_labels=True,
                                                     image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3])
    processor.save_pretrained(folder)
    return model, processor


@pytest.mark.parametrize("backbone, seed", [("convnext", 0), ("swin", 3)])  # seeds whose maps hold several classes
def test_upernet_imports_with_parity_and_without_its_auxiliary_head(tmp_path, caplog, backbone, seed):
    import logging

    model, processor = save_upernet(tmp_path / "upernet", backbone=backbone, seed=seed)
    with caplog.at_level(logging.INFO, logger="segmodels.io.transformers_import"):
        module = SegmentationModule.from_pretrained(str(tmp_path / "upernet"))
    dropped = {"convnext": "8 tensors inference never uses (auxiliary_head)",
               "swin": "10 tensors inference never uses (auxiliary_head, backbone)"}  # + the Swin's final LayerNorm
    assert f"dropped {dropped[backbone]}" in caplog.text
    assert module.hparams.decoder == "upernet" and module.hparams.decoder_kwargs["pool_norm"] is True
    assert_parity_with_the_image_processor(module, model, processor, spread=True)


def semantic_probabilities(outputs, size) -> torch.Tensor:
    """The reference's semantic inference (Mask2Former's and EoMT's): mask logits resized to the image, class x mask
    probabilities summed over queries; normalised per pixel."""
    masks = F.interpolate(outputs.masks_queries_logits, size=size, mode="bilinear", align_corners=False)
    scores = torch.einsum("bqc,bqhw->bchw", outputs.class_queries_logits.softmax(-1)[..., :-1], masks.sigmoid())
    return scores / scores.sum(1, keepdim=True)


def save_mask2former(folder, labels: int = 5, backbone: str = "resnet", seed: int = 0):
    config = transformers.Mask2FormerConfig(
        backbone_config=SOURCE_BACKBONES[backbone](), num_queries=8, hidden_dim=32, feature_size=32, mask_feature_size=32,
        encoder_layers=1, decoder_layers=3, dim_feedforward=64, encoder_feedforward_dim=64, num_attention_heads=4,
        **labelled(labels))
    torch.manual_seed(0)
    model = randomised(transformers.Mask2FormerForUniversalSegmentation(config), seed)
    with torch.no_grad():  # classes and masks far apart: a wrong tensor moves the probabilities
        model.class_predictor.weight.mul_(20)
        model.model.transformer_module.decoder.mask_predictor.get_submodule("mask_embedder.2.0").weight.mul_(200)
    randomised_tables(model)
    model.save_pretrained(folder)
    processor = transformers.Mask2FormerImageProcessor(do_resize=False, do_pad=False, image_mean=[0.4, 0.5, 0.6],
                                                       image_std=[0.2, 0.25, 0.3])
    processor.save_pretrained(folder)
    return model, processor


@pytest.mark.parametrize("backbone, seed", [("resnet", 0), ("swin", 1)])  # seeds whose maps hold several classes
def test_mask2former_imports_with_parity(tmp_path, backbone, seed):
    model, processor = save_mask2former(tmp_path / "mask2former", backbone=backbone, seed=seed)
    module = SegmentationModule.from_pretrained(str(tmp_path / "mask2former"))
    assert module.hparams.decoder == "mask2former" and module.hparams.decoder_kwargs["layers"] == 2

    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape[-2:] == (HEIGHT, WIDTH)
    with torch.no_grad():
        expected = semantic_probabilities(model(pixel_values=pixel_values), (HEIGHT, WIDTH))
        ours = module(pixel_values).softmax(1)
    assert expected.argmax(1).unique().numel() > 1
    assert (ours - expected).abs().max() < 1e-4
    assert np.array_equal(module.segment(image), expected.argmax(1)[0].numpy())


def save_eomt(folder, labels: int = 5, annealing: float = 0.0):
    config = transformers.EomtConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=64,
                                     patch_size=16, num_register_tokens=4, num_blocks=2, num_queries=6,
                                     **labelled(labels))
    torch.manual_seed(0)
    model = randomised(transformers.EomtForUniversalSegmentation(config))
    with torch.no_grad():
        model.attn_mask_probs.fill_(annealing)  # 0: fully annealed, as a published checkpoint
        for name, parameter in model.named_parameters():
            if "lambda1" in name:  # layer scales off their start, so every block counts
                parameter.uniform_(0.5, 1.5)
        model.class_predictor.weight.mul_(20)
        model.mask_head.fc3.weight.mul_(20)
    model.save_pretrained(folder)
    return model


def test_eomt_with_registers_imports_with_parity_and_an_unfinished_annealing_is_refused(tmp_path):
    save_eomt(tmp_path / "unfinished", annealing=0.5)  # mid-annealing: still masks at inference
    with pytest.raises(ArchitectureMismatch, match=r"attn_mask_probs \[0.5, 0.5\].*runs unmasked"):
        SegmentationModule.from_pretrained(str(tmp_path / "unfinished"))
    model = save_eomt(tmp_path / "eomt")
    module = SegmentationModule.from_pretrained(str(tmp_path / "eomt"))
    assert module.hparams.decoder == "eomt" and module.model.backbone.vit.num_prefix_tokens == 5  # class + 4 registers

    x = torch.randn(1, 3, 64, 64)  # transformers' EoMT runs at its config's image_size only
    with torch.no_grad():
        expected = semantic_probabilities(model(pixel_values=x), (64, 64))
        ours = module(x).softmax(1)
    assert expected.argmax(1).unique().numel() > 1
    assert (ours - expected).abs().max() < 1e-4


def save_dpt(folder, labels: int = 5, fusion_norm: bool = False):
    config = transformers.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                    image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[8, 16, 32, 64], fusion_hidden_size=16,
                                    use_batch_norm_in_fusion_residual=fusion_norm, use_auxiliary_head=True,
                                    **labelled(labels))
    torch.manual_seed(0)
    model = randomised(transformers.DPTForSemanticSegmentation(config))
    with torch.no_grad():  # weights of unit gain: maps that vary over the image, so a wrong tensor shows
        for layer in model.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(layer.weight)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("fusion_norm", [False, True])  # dpt-large-ade's residual units have BatchNorm
def test_dpt_imports_with_parity_and_without_its_auxiliary_head(tmp_path, fusion_norm):
    model = save_dpt(tmp_path / "dpt", fusion_norm=fusion_norm)
    module = SegmentationModule.from_pretrained(str(tmp_path / "dpt"))
    assert module.hparams.decoder == "dpt" and module.hparams.backbone_kwargs["norm_eps"] == 1e-12
    x = torch.randn(1, 3, 64, 64)  # transformers' DPT adds its position embeddings unresized at its image_size
    expected = source_probabilities(model, x)
    with torch.no_grad():
        ours = module(x).softmax(1)
    assert expected.argmax(1).unique().numel() > 1
    assert (ours - expected).abs().max() < 1e-4


def test_a_broken_mapping_or_an_unexpressible_config_is_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    save_segformer(tmp_path / "segformer")
    weights = tmp_path / "segformer" / "model.safetensors"
    state = load_file(str(weights))
    state["decode_head.extra.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"1 source tensors unmapped \['decode_head.extra.weight'\]"):
        SegmentationModule.from_pretrained(str(tmp_path / "segformer"))
    del state["decode_head.extra.weight"], state["segformer.encoder.layer_norm.3.bias"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"1 of ours left unfilled \['backbone.stages.3.norm.bias'\]"):
        SegmentationModule.from_pretrained(str(tmp_path / "segformer"))
    config = json.loads((tmp_path / "segformer" / "config.json").read_text())
    config["sr_ratios"] = [4, 4, 2, 1]
    (tmp_path / "segformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArchitectureMismatch, match=r"sr_ratios=\[4, 4, 2, 1\] \(this project's model: \[8, 4, 2, 1\]\)"):
        SegmentationModule.from_pretrained(str(tmp_path / "segformer"))


@pytest.mark.slow
def test_convert_evaluate_and_fine_tune_from_a_published_folder(tmp_path, tiny_demo):
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from segmodels.cli.evaluate import evaluate
    from segmodels.cli.train import build_module, train
    from segmodels.io.init_from import load_matching
    from tests.helpers import ROOT, compose_train, subprocess_env, tiny_overrides

    save_segformer(tmp_path / "hub", reduce_labels=False, labels=4)
    (tmp_path / "hub" / "README.md").write_text("---\nlicense: other\ntags: [vision]\n---\n# SegFormer\n")
    result = subprocess.run([sys.executable, str(ROOT / "convert.py"), f"source={tmp_path / 'hub'}",
                             f"output={tmp_path / 'converted'}", "name=nvidia/segformer-b0-finetuned-ade-512-512"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "licence    other" in result.stdout and "37.4 mIoU on ADE20K val" in result.stdout
    card = (tmp_path / "converted" / "README.md").read_text()
    assert "imported from: `nvidia/segformer-b0-finetuned-ade-512-512`" in card and "quoted from the source" in card

    dataset = OmegaConf.to_container(compose_train(tiny_overrides(tiny_demo, tmp_path, "dataset.num_workers=0")).dataset,
                                     resolve=True)
    direct = evaluate(None, tmp_path / "direct", dataset=dataset, model=str(tmp_path / "hub"))
    converted = evaluate(None, tmp_path / "converted_eval", dataset=dataset, model=str(tmp_path / "converted"))
    assert direct["mIoU"] == converted["mIoU"] and direct["images"] == 4 and direct["checkpoint"] == str(tmp_path / "hub")
    save_segformer(tmp_path / "ade", reduce_labels=True, labels=4)
    with pytest.raises(ValueError, match=r"reduce_zero_label=True .* dataset.reduce_zero_label=true"):
        evaluate(None, tmp_path / "refused", dataset=dataset, model=str(tmp_path / "ade"))

    # fine-tuning on 4 classes from a 5-class checkpoint: all but the classifier keep the published weights
    save_segformer(tmp_path / "five", labels=5)
    overrides = tiny_overrides(tiny_demo, tmp_path / "run", "experiment=segformer_b0_finetune",
                               f"model.init_from={tmp_path / 'five'}", "decoder.decoder_channels=64")
    module = build_module(compose_train(overrides))
    report = load_matching(module, tmp_path / "five")
    assert sorted(k.split(" ")[0] for k in report["other_shape"]) == ["model.decoder.classifier.bias",
                                                                        "model.decoder.classifier.weight"]
    assert not report["absent"] and len(report["loaded"]) == len(module.state_dict()) - 2
    metrics = train(compose_train(overrides))
    assert metrics["test/mIoU"] > 0 and (tmp_path / "run" / "model" / "model.safetensors").is_file()


FAMILIES = {  # recipe, a published folder's stand-in, the class-specific tensors that start anew at another count
    "upernet_convnext_finetune": (save_upernet, ["model.decoder.classifier.bias", "model.decoder.classifier.weight"]),
    "upernet_swin_finetune": (partial(save_upernet, backbone="swin"), ["model.decoder.classifier.bias",
                                                                       "model.decoder.classifier.weight"]),
    "mask2former_finetune": (save_mask2former, ["model.decoder.classifier.bias", "model.decoder.classifier.weight"]),
    "eomt_finetune": (save_eomt, ["model.decoder.classifier.bias", "model.decoder.classifier.weight"]),
    "dpt_finetune": (save_dpt, ["model.decoder.head.4.bias", "model.decoder.head.4.weight"]),
}


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_each_family_fine_tunes_from_a_published_folder_as_that_model(recipe, tmp_path, tiny_demo):
    from segmodels.cli.train import build_module, with_source_architecture
    from segmodels.io.init_from import load_matching
    from tests.helpers import compose_train, tiny_overrides

    save, class_specific = FAMILIES[recipe]
    save(tmp_path / "published", labels=7)  # 7 classes published; the demo data has 4
    cfg = with_source_architecture(compose_train(tiny_overrides(
        tiny_demo, tmp_path / "run", f"experiment={recipe}", f"model.init_from={tmp_path / 'published'}")))
    module = build_module(cfg, num_classes=4)
    report = load_matching(module, tmp_path / "published")
    assert sorted(k.split(" ")[0] for k in report["other_shape"]) == class_specific  # and nothing else starts anew
    assert not report["absent"] and len(report["loaded"]) == len(module.state_dict()) - 2
    source = SegmentationModule.from_pretrained(str(tmp_path / "published"))
    assert module.hparams.backbone_kwargs == {**source.hparams.backbone_kwargs, **{
        k: v for k, v in module.hparams.backbone_kwargs.items() if k not in source.hparams.backbone_kwargs}}
    assert (module.mean, module.std) == (source.mean, source.std)  # the source's input statistics


def test_a_fine_tuning_run_from_a_published_dpt_trains_and_tests(tmp_path, tiny_demo):
    from segmodels.cli.train import train
    from tests.helpers import compose_train, tiny_overrides

    save_dpt(tmp_path / "published", labels=7)
    metrics = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "run", "experiment=dpt_finetune",
                                                 f"model.init_from={tmp_path / 'published'}")))
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: dpt" in config and "readout: project" in config  # the run records the architecture it trained
    assert metrics["test/mIoU"] > 0 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
