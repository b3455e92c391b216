"""Backbones: every registered one declares what it builds; pretrained weights genuine, fully loaded, and
never silently replaced by random ones."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision import models

from segmodels import BACKBONES, PretrainedWeightsUnavailable, build_model, list_backbones
from segmodels.models.backbones.efficientnet_lite import packaged_weights_path, to_timm_keys
from segmodels.models.backbones.weights import hub_cache_path
from tests.helpers import concrete, subprocess_env

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_packaged_efficientnet_lite0_weights_are_genuine_imagenet_weights():
    """The renamed package weights fill every tensor of the timm model and recognise a real cat photo."""
    import skimage.data as skimage_data
    classifier = timm.create_model("tf_efficientnet_lite0").eval()
    state = to_timm_keys(torch.load(packaged_weights_path(), weights_only=True), [len(s) for s in classifier.blocks])
    assert set(state) == set(classifier.state_dict())
    classifier.load_state_dict(state, strict=True)
    photo = np.asarray(Image.fromarray(skimage_data.chelsea()).resize((224, 224)), dtype=np.float32) / 255
    x = (torch.from_numpy(photo).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        assert classifier(x).argmax().item() in IMAGENET_CATS


def test_efficientnet_lite0_backbone_matches_the_packaged_classifier_features():
    model = build_model("efficientnet_lite0", "unet", 3, pretrained=True)
    classifier = timm.create_model("tf_efficientnet_lite0").eval()
    classifier.load_state_dict(to_timm_keys(torch.load(packaged_weights_path(), weights_only=True), [1, 2, 2, 3, 3, 4, 1]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.backbone.eval()
        deepest = model.backbone(x)[-1]
        expected = classifier.blocks(classifier.bn1(classifier.conv_stem(x)))
    assert torch.allclose(deepest, expected, atol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
def test_offline_without_cached_weights_stops_with_both_ways_out(offline_hub, backbone):
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        build_model(backbone, "unet", 3, pretrained=True)
    message = str(error.value)
    assert str(offline_hub) in message and ".pth" in message
    assert "backbone.pretrained=false" in message and "put that file at" in message


def test_cached_torchvision_weights_are_loaded_and_give_the_same_features(offline_hub):
    reference = models.resnet50().eval()  # stands in for the published file: same name, same layout
    path = hub_cache_path(models.ResNet50_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    backbone = build_model("resnet50", "unet", 3, pretrained=True).backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = backbone(x)
        stem = reference.relu(reference.bn1(reference.conv1(x)))
        deepest = reference.layer4(reference.layer3(reference.layer2(reference.layer1(reference.maxpool(stem)))))
    assert torch.equal(features[0], stem) and torch.equal(features[-1], deepest)


def test_local_vgg_weights_file_gives_the_same_features(tmp_path):
    reference = models.vgg16().eval()
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    weights = {"weights": str(tmp_path / "vgg16.pth")}
    backbone = build_model("vgg16", "unet", 3, pretrained=False, backbone_kwargs=weights).backbone
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone(x)[-1], reference.features[:30](x))  # seed 000's features[23:-1] end


def test_local_mobilenet_weights_file_gives_the_same_features(tmp_path):
    reference = models.mobilenet_v3_large().eval()
    torch.save(reference.state_dict(), tmp_path / "mnv3.pth")
    backbone = build_model("mobilenet_v3_large", "unet", 3, pretrained=False,
                           backbone_kwargs={"weights": str(tmp_path / "mnv3.pth")}).backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x)[-1], reference.features(x))


def test_a_weights_file_that_does_not_fit_is_refused(tmp_path):
    torch.save(models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(RuntimeError, match="weights left unloaded"):
        build_model("resnet50", "unet", 3, pretrained=False, backbone_kwargs={"weights": str(tmp_path / "resnet18.pth")})


@pytest.mark.parametrize("name", [concrete(n) for n in list_backbones()])
def test_every_backbone_declares_what_it_builds(name):
    """The BackboneInfo registered with each backbone, read without building it, is what the network is."""
    info = BACKBONES.info(name)
    backbone = build_model(name, "linear", 2, pretrained=False).backbone.eval()  # linear reads every level it gets
    with torch.no_grad():
        levels = backbone(torch.randn(1, 3, 64, 64))
    assert list(info.channels) == backbone.channels == [level.shape[1] for level in levels]
    assert list(info.strides) == backbone.strides == [64 // level.shape[-1] for level in levels]
    assert (info.mean, info.std) == (backbone.mean, backbone.std) and info.weights


@pytest.mark.parametrize("name", ["convnext_atto", "vit_small_patch14_dinov2"])  # timm's pyramid and a plain ViT
def test_timm_backbones_offline_without_cached_weights_say_how_out(name, tmp_path):
    env = subprocess_env()
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    script = f"from segmodels import build_model\nbuild_model('{name}', 'linear', 3, pretrained=True)\n"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "PretrainedWeightsUnavailable" in result.stderr and f"backbone '{name}'" in result.stderr
    assert "backbone.weights=" in result.stderr and "backbone.pretrained=false" in result.stderr


def test_swin_runs_at_any_size_and_equals_timms_forward_where_the_windows_fit():
    """Where every map is a whole number of windows larger than one window (192 px, windows of 3) the reference's
    windowing is timm's; at 67 x 93 timm refuses the size, ours pads to patches and windows as the reference does."""
    import timm

    from segmodels.models.backbones.swin import SwinBackbone

    shape = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "window_size": 3}
    by_name = build_model("swin_tiny_patch4_window7_224", "linear", 3, pretrained=False,
                          backbone_kwargs={"model_kwargs": shape}).backbone.eval()
    through_timm = build_model("timm", "linear", 3, pretrained=False, backbone_kwargs={
        "model_name": "swin_tiny_patch4_window7_224", "model_kwargs": shape}).backbone
    assert isinstance(by_name, SwinBackbone) and isinstance(through_timm, SwinBackbone)
    reference = timm.create_model("swin_tiny_patch4_window7_224", features_only=True, pretrained=False, img_size=192,
                                  **shape).eval()
    reference.load_state_dict(by_name.net.state_dict())
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        assert all(torch.equal(ours, theirs.permute(0, 3, 1, 2)) for ours, theirs in zip(by_name(x), reference(x)))
        levels = by_name(torch.randn(1, 3, 67, 93))
    assert [tuple(level.shape[-2:]) for level in levels] == [(17, 24), (9, 12), (5, 6), (3, 3)]


def test_a_timm_model_whose_features_are_channels_last_gives_nchw_levels():
    swin = {"model_name": "swin_tiny_patch4_window7_224",  # timm's Swin returns (N, H, W, C) maps
            "model_kwargs": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 2,
                             "img_size": 64}}
    model = build_model("timm", "upernet", 3, pretrained=False, backbone_kwargs=swin,
                        decoder_kwargs={"decoder_channels": 16}).eval()
    levels = model.backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(level.shape[1:]) for level in levels] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
