"""The loss group: what each loss returns on cases whose answer is known."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segmodels.training.losses import build_loss


def confident(target: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(target.clamp(0, classes - 1), classes).permute(0, 3, 1, 2).float() * 40 - 20


def test_dice_is_zero_for_a_perfect_prediction_and_ignores_ignored_pixels():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    logits = confident(target, 3)
    target_with_ignore = target.clone()
    target_with_ignore[:, :2] = 255
    logits[:, :, :2] = torch.randn(2, 3, 2, 8)  # anything where the target is ignored
    assert build_loss("dice", 255)(logits, target_with_ignore).item() == pytest.approx(0.0, abs=1e-3)
    assert build_loss("dice", 255)(-confident(target, 3), target).item() > 0.9  # every pixel wrong
    nothing = torch.full_like(target, 255)
    for name in ("dice", "focal"):  # no labelled pixel: 0, and still a graph to step through
        logits.requires_grad_(True)
        loss = build_loss(name, 255)(logits, nothing)
        assert loss.item() == 0.0 and loss.requires_grad


def test_focal_with_gamma_zero_is_cross_entropy_and_smaller_otherwise():
    logits, target = torch.randn(2, 4, 6, 6), torch.randint(0, 4, (2, 6, 6))
    target[0, 0] = 255
    ce = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(build_loss("focal", 255, gamma=0.0)(logits, target), ce)
    assert build_loss("focal", 255, gamma=2.0)(logits, target) < ce


def test_ce_dice_adds_the_weighted_parts_and_class_weights_reach_the_ce():
    logits, target = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    weights = [1.0, 2.0, 0.5]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights)) + 0.5 * build_loss("dice", 255)(logits, target)
    assert torch.allclose(build_loss("ce_dice", 255, weights, dice_weight=0.5)(logits, target), expected)
    with pytest.raises(KeyError, match="unknown loss 'lovasz'"):
        build_loss("lovasz", 255)


def test_class_weights_with_dice_alone_are_refused_naming_the_loss_that_takes_them():
    with pytest.raises(ValueError, match=r"loss=dice takes no class_weights.*use loss=ce_dice"):
        build_loss("dice", 255, [1.0, 2.0, 0.5])


def test_an_unknown_reduction_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"loss.reduction='none': use 'mean' or 'sum'"):
        build_loss("ce", 255, None, reduction="none")


def test_uint8_images_given_to_the_model_say_where_normalisation_went():
    from segmodels import SegmentationModule

    module = SegmentationModule(backbone="resnet18", decoder="unet", num_classes=2, pretrained=False)
    with pytest.raises(TypeError, match=r"got uint8 images.*trainer.fit\(module, datamodule=dm\).*dm.normalize"):
        module(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
