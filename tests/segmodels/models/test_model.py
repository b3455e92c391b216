"""The model contract: seed parameter counts, any input size, freezing exactly the backbone."""
from __future__ import annotations

import pytest
import torch

from segmodels import build_model, list_backbones, list_decoders
from tests.segmodels.models.test_decoders import PLAIN_VIT, SMALL, VIT_ONLY

SEED_PARAMETERS = [
    ("vgg16", "unet", 24_892_437),
    ("resnet50", "unet", 43_934_101),
    ("vgg16", "att_unet", 35_463_041),
]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("backbone,decoder,expected", SEED_PARAMETERS)
def test_seed_models_have_the_published_parameter_count(backbone, decoder, expected):
    assert count(build_model(backbone, decoder, num_classes=21, pretrained=False)) == expected


def test_registries_list_what_exists():
    assert {
        "efficientnet_lite0", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50",
        "resnet101", "mobilenet_v2", "mobilenet_v3_large",
    } <= set(list_backbones())
    assert {"unet", "att_unet"} <= set(list_decoders())
    with pytest.raises(KeyError, match="unknown backbone 'resnet5'; did you mean resnet50"):
        build_model("resnet5", "unet", 3, pretrained=False)


def test_backbone_declares_its_pyramid():
    model = build_model("resnet50", "unet", 3, pretrained=False)
    levels = model.backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in levels] == model.backbone.channels == [64, 256, 512, 1024, 2048]
    assert [64 // f.shape[-1] for f in levels] == model.backbone.strides == [2, 4, 8, 16, 32]
    vgg = build_model("vgg16", "unet", 3, pretrained=False).backbone
    assert vgg.channels == [64, 128, 256, 512, 512] and vgg.strides == [1, 2, 4, 8, 16]
    for name, channels in [("mobilenet_v2", [16, 24, 32, 96, 1280]), ("mobilenet_v3_large", [16, 24, 40, 112, 960])]:
        backbone = build_model(name, "unet", 3, pretrained=False).backbone.eval()
        levels = backbone(torch.randn(1, 3, 64, 64))
        assert [f.shape[1] for f in levels] == backbone.channels == channels
        assert [64 // f.shape[-1] for f in levels] == backbone.strides


def test_unet_on_resnet34_as_in_seed_002_trains():
    model = build_model("resnet34", "unet", 2, pretrained=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 2, (2, 32, 32))
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("decoder", list_decoders())
def test_freeze_touches_exactly_the_backbone(decoder):
    small = {"fc_channels": 32} if decoder.startswith("fcn") else SMALL.get(decoder)
    backbone, options = ("vit_small_patch16_224", PLAIN_VIT) if decoder in VIT_ONLY else ("efficientnet_lite0", None)
    model = build_model(backbone, decoder, 3, pretrained=False, backbone_kwargs=options, decoder_kwargs=small)
    model.train()
    model.freeze_backbone(bn_eval=True)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == (not name.startswith("backbone."))
    assert not any(m.training for m in model.backbone.modules())
    assert all(m.training for m in model.decoder.modules())
    model.train()  # Lightning calls this after every validation: frozen BatchNorm must stay in eval
    assert not any(m.training for m in model.backbone.modules())
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_other_channel_counts_keep_pretrained_filters_useful():
    rgb = build_model("efficientnet_lite0", "unet", 3, in_channels=3, pretrained=True)
    grey = build_model("efficientnet_lite0", "unet", 3, in_channels=1, pretrained=True)
    summed = rgb.backbone.net.conv_stem.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(grey.backbone.net.conv_stem.weight, summed)
    assert grey.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert len(grey.mean) == 1
