"""Every registered decoder on every backbone family, every experiment file, the seed systems exactly, export.

The cases come from the registries and conf/experiment/, so a new decoder, backbone family or experiment
is tested without editing this file.
"""
from __future__ import annotations

import pytest
import timm
import torch
from torchvision import models

from segmodels import build_model, list_backbones, list_decoders
from segmodels.cli.train import build_module
from segmodels.models.decoders import DECODERS as DECODERS_INFO
from segmodels.models.decoders.fcn import bilinear_kernel
from tests.helpers import ROOT, backbone_families, compose_train, count_parameters

FAMILIES = backbone_families()
DECODERS = list_decoders()
MASK_CLASSIFICATION = {"queries": 8, "num_points": 64}
SMALL = {"fcn32s": {"fc_channels": 64}, "fcn16s": {"fc_channels": 64}, "fcn8s": {"fc_channels": 64},  # speed only
         "mask2former": {**MASK_CLASSIFICATION, "width": 64, "layers": 3, "pixel_layers": 1, "feedforward": 64,
                         "pixel_feedforward": 64}, "eomt": {**MASK_CLASSIFICATION, "num_blocks": 2},
         "dpt": {"features": 32, "reassemble_channels": [16, 32, 48, 64]}}
VIT_ONLY = [d for d in DECODERS if (DECODERS_INFO.info(d) or {}).get("plain_vit_only")]  # EoMT: inside a plain ViT
CNN_FITTING = [d for d in DECODERS if d not in VIT_ONLY]
PLAIN_VIT = {"adapter": "none", "depth": 3}  # the tokens themselves, as a head inside the ViT needs them
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def test_the_seed_decoders_are_registered():
    assert {"unet", "att_unet", "segnet", "fcn32s", "fcn16s", "fcn8s"} <= set(DECODERS)
    assert "timm" in list_backbones()
    assert "convnext_atto" not in list_backbones()  # timm names resolve without being listed one by one
    model = build_model("timm", "unet", 2, pretrained=False, backbone_kwargs={"model_name": "convnext_atto"})
    assert model.backbone.strides == [4, 8, 16, 32]


def check_logits_and_gradients(model, in_channels: int = 3) -> None:
    """Logits at the input's size at odd sizes, in train and eval mode, and a gradient for every parameter."""
    model.train()
    logits = model(torch.randn(2, in_channels, 67, 71))
    assert logits.shape == (2, 3, 67, 71)
    logits.square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    assert all(0 <= i < len(model.backbone.channels) for i in model.decoder.levels)  # what the decoder reads
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 100, 150)).shape == (1, 3, 100, 150)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_decoder_on_every_backbone_family(backbone, decoder):
    if decoder in VIT_ONLY and not backbone.startswith("vit"):
        with pytest.raises(ValueError, match=f"decoder '{decoder}' cannot be built on backbone '{backbone}'.*"
                                             "plain ViT.*use decoder=mask2former"):
            build_model(backbone, decoder, num_classes=3, pretrained=False, decoder_kwargs=SMALL.get(decoder))
        return
    options = PLAIN_VIT if decoder in VIT_ONLY else None
    check_logits_and_gradients(build_model(backbone, decoder, num_classes=3, pretrained=False, backbone_kwargs=options,
                                           decoder_kwargs=SMALL.get(decoder)))


@pytest.mark.parametrize("in_channels", [1, 4])
@pytest.mark.parametrize("decoder", DECODERS)
def test_every_decoder_with_one_or_four_input_channels(decoder, in_channels):
    backbone, options = ("vit_small_patch16_224", PLAIN_VIT) if decoder in VIT_ONLY else ("resnet18", None)
    model = build_model(backbone, decoder, 3, in_channels=in_channels, pretrained=False, backbone_kwargs=options,
                        decoder_kwargs=SMALL.get(decoder))
    check_logits_and_gradients(model, in_channels)


@pytest.mark.parametrize("output_stride,strides", [(16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])])
@pytest.mark.parametrize("decoder", CNN_FITTING)
def test_every_decoder_on_a_dilated_resnet50(decoder, output_stride, strides):
    model = build_model("resnet50", decoder, 3, pretrained=False, decoder_kwargs=SMALL.get(decoder),
                        backbone_kwargs={"output_stride": output_stride})
    assert model.backbone.strides == strides
    check_logits_and_gradients(model)


def test_atrous_rates_follow_the_output_stride_and_fcn_takes_the_deepest_level():
    rates = {os: build_model("resnet50", "deeplabv3plus", 3, pretrained=False, backbone_kwargs={"output_stride": os})
             .decoder.rates for os in (8, 16, 32)}
    assert rates == {8: [12, 24, 36], 16: [6, 12, 18], 32: [3, 6, 9]}
    fcn = build_model("resnet50", "fcn8s", 3, pretrained=False, backbone_kwargs={"output_stride": 16},
                      decoder_kwargs={"fc_channels": 8}).decoder
    assert fcn.sources == [(4, 2), (3, 1), (2, 1)]  # layer4 pooled to 32 (not layer3), layer3 at 16, layer2 at 8


def test_backbones_that_cannot_dilate_and_decoders_that_cannot_fit_are_refused_naming_both():
    for name in ("vgg16", "resnet18", "mobilenet_v2"):
        with pytest.raises(ValueError, match=f"backbone '{name}' cannot run at backbone.output_stride=16: it allows 32\\. "
                                             "Dilated backbones: resnet50.*backbone=timm backbone.name=resnet18"):
            build_model(name, "unet", 3, pretrained=False, backbone_kwargs={"output_stride": 16})
    one_level = {"model_name": "convnext_atto", "out_indices": [3]}  # a single stride-32 map
    with pytest.raises(ValueError, match="decoder 'fcn8s' cannot be built on backbone 'timm' \\(levels 320@32\\).*"
                                         "no level at stride 16.*fit any pyramid: deeplabv3, deeplabv3plus, dpt, fpn, linear, "
                                         "mask2former, pspnet, segformer, upernet"):
        build_model("timm", "fcn8s", 3, pretrained=False, backbone_kwargs=one_level)
    check_logits_and_gradients(build_model("timm", "deeplabv3plus", 3, pretrained=False, backbone_kwargs=one_level))


@pytest.mark.parametrize("decoder", CNN_FITTING)
def test_sizes_no_stride_divides(decoder):
    model = build_model("mobilenet_v2", decoder, num_classes=4, pretrained=False, decoder_kwargs=SMALL.get(decoder)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 250, 333)).shape == (1, 4, 250, 333)


SEED_EXPERIMENTS = [
    ("unet_vgg16", 24_892_437),
    ("unet_resnet50", 43_934_101),
    ("att_unet_vgg16", 35_463_041),
    ("fcn8s_vgg16_seed003", 33_736_562),
    ("fcn32s_vgg16", 136_152_917),
    ("fcn16s_vgg16", 134_815_994),
    ("fcn8s_vgg16", 134_489_759),
]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_file_composes_and_builds_a_working_model(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", "backbone.pretrained=false", f"output_dir={tmp_path}"])
    model = build_module(cfg).model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, cfg.in_channels, 64, 64))
    assert logits.shape == (1, cfg.dataset.num_classes, 64, 64)


@pytest.mark.parametrize("experiment,expected", SEED_EXPERIMENTS)
def test_experiment_configs_build_the_seed_models_exactly(experiment, expected, tmp_path):
    cfg = compose_train([f"experiment={experiment}", "backbone.pretrained=false", f"output_dir={tmp_path}",
                         "dataset.num_classes=21", "dataset.class_names=null"])
    model = build_module(cfg).model
    assert sum(p.numel() for p in model.parameters()) == expected


def test_segnet_of_seed_001_has_its_own_stem_and_no_shared_layers(tmp_path):
    cfg = compose_train(["experiment=segnet_vgg19_bn", "backbone.pretrained=false", f"output_dir={tmp_path}"])
    model = build_module(cfg).model.eval()
    assert cfg.in_channels == 2 and model.backbone.features[0].in_channels == 2
    every = list(model.named_modules(remove_duplicate=False))
    assert len(every) == len(list(model.named_modules()))  # seed 001's `[...] * 4` would repeat modules
    assert len({id(p) for p in model.parameters()}) == len(list(model.named_parameters(remove_duplicate=False)))
    # seed 001's encoder slices [3:7] [7:14] [14:27] [27:40] [40:] are the after-pool taps
    assert model.backbone.ends == [7, 14, 27, 40, 53] and model.backbone.strides == [2, 4, 8, 16, 32]
    with torch.no_grad():
        assert model(torch.randn(1, 2, 160, 160)).shape == (1, cfg.dataset.num_classes, 160, 160)


def test_fcn_net_surgery_and_bilinear_upsampling(tmp_path):
    vgg = models.vgg16()
    torch.save(vgg.state_dict(), tmp_path / "vgg16.pth")
    model = build_model("vgg16", "fcn32s", 21, pretrained=False,
                        backbone_kwargs={"weights": str(tmp_path / "vgg16.pth"), "taps": "after_pool"},
                        decoder_kwargs={"fc_channels": 4096, "fc_kernel": 7})
    assert torch.equal(model.decoder.fc6.weight, vgg.classifier[0].weight.view(4096, 512, 7, 7))
    assert torch.equal(model.decoder.fc7.weight, vgg.classifier[3].weight.view(4096, 4096, 1, 1))
    assert model.backbone.classifier_state == {}  # freed once the decoder took it
    assert torch.equal(model.decoder.final.weight, bilinear_kernel(21, 64))
    assert model.decoder.final.bias is None and not model.decoder.scores[0].weight.any()
    constant = torch.ones(1, 21, 4, 4)
    upsampled = model.decoder.final(constant)
    assert upsampled.shape == (1, 21, 128, 128)
    assert torch.allclose(upsampled[..., 32:96, 32:96], torch.ones(1, 21, 64, 64))


def test_four_input_channels_cycle_and_rescale_the_pretrained_filters(tmp_path):
    reference = models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    weights = {"weights": str(tmp_path / "resnet18.pth")}
    model = build_model("resnet18", "unet", 2, in_channels=4, pretrained=False, backbone_kwargs=weights)
    rgb = reference.conv1.weight
    assert torch.allclose(model.backbone.conv1.weight, torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4)
    assert model.mean == (0.485, 0.456, 0.406, 0.485)
    assert model.eval()(torch.randn(1, 4, 40, 40)).shape == (1, 2, 40, 40)


def test_timm_backbone_from_a_local_state_dict_gives_the_same_features(tmp_path):
    reference = timm.create_model("resnet18").eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    cfg = compose_train(["backbone=timm", "backbone.name=timm/resnet18", f"backbone.weights={tmp_path / 'resnet18.pth'}",
                         f"output_dir={tmp_path}"])
    backbone = build_module(cfg).model.backbone.eval()
    assert backbone.mean == tuple(reference.pretrained_cfg["mean"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x)[-1], reference.forward_features(x))


@pytest.mark.parametrize("decoder", ["unet", "fcn8s", "deeplabv3plus", "segformer"])
def test_onnx_export_with_dynamic_batch_and_size_matches_pytorch(decoder, tmp_path):
    import onnxruntime as ort
    model = build_model("mobilenet_v2", decoder, 3, pretrained=False, decoder_kwargs=SMALL.get(decoder)).eval()
    path = tmp_path / f"{decoder}.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": axes, "logits": axes}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 64), (2, 3, 50, 77)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        (actual,) = session.run(None, {"image": x.numpy()})
        assert actual.shape == expected.shape
        assert abs(actual - expected).max() < 1e-3


@pytest.mark.slow
def test_torch_compile_gives_the_same_logits():
    model = build_model("resnet18", "unet", 3, pretrained=False, decoder_kwargs={"decoder_channels": [8, 16, 32, 64]}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(torch.compile(model)(x), model(x), atol=1e-4)


def test_deeplabv3plus_is_separable_by_default_and_a_plain_checkpoint_of_before_loads_as_it_was(tmp_path):
    from segmodels import SegmentationModule
    from tests.helpers import saved_checkpoint

    separable = build_model("mobilenet_v2", "deeplabv3plus", 3, pretrained=False).decoder
    depthwise = [m for m in separable.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 5 and all(m.groups == m.in_channels for m in depthwise)  # 3 atrous ASPP + 2 in the decoder
    plain = build_model("mobilenet_v2", "deeplabv3plus", 3, pretrained=False, decoder_kwargs={"separable": False})
    assert count_parameters(separable) < count_parameters(plain.decoder) / 2

    old = SegmentationModule(backbone="mobilenet_v2", decoder="deeplabv3plus", num_classes=3, pretrained=False,
                             decoder_kwargs={"separable": False}).eval()
    del old.hparams.decoder_kwargs["separable"]  # written before the option existed: its layout is the plain one
    path = saved_checkpoint(old, tmp_path / "old.ckpt")
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        expected = old(x)
        for loaded in (SegmentationModule.restore(str(path)), SegmentationModule.load_from_checkpoint(path).eval()):
            assert torch.equal(loaded(x), expected)
        old.save_pretrained(str(tmp_path / "folder"))
        assert torch.equal(SegmentationModule.from_pretrained(str(tmp_path / "folder"))(x), expected)


def test_a_mask2former_checkpoint_from_before_the_projection_bias_loads_as_it_was(tmp_path):
    from segmodels import SegmentationModule
    from tests.helpers import saved_checkpoint

    small = {"queries": 4, "width": 32, "layers": 1, "heads": 2, "feedforward": 32, "pixel_layers": 1,
             "pixel_feedforward": 32, "projection_bias": False}
    old = SegmentationModule(backbone="mobilenet_v2", decoder="mask2former", num_classes=3, pretrained=False,
                             decoder_kwargs=small).eval()
    del old.hparams.decoder_kwargs["projection_bias"]  # written before the option existed
    path = saved_checkpoint(old, tmp_path / "old.ckpt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(SegmentationModule.restore(str(path))(x), old(x))
    assert SegmentationModule(backbone="mobilenet_v2", decoder="mask2former", num_classes=3, pretrained=False,
                              decoder_kwargs={**small, "projection_bias": True}).model.decoder.pixel_decoder \
        .project[0][0].bias is not None  # the reference's layout, the default
