"""Plain ViTs (segmodels/models/backbones/vit.py) as pyramids in every decoder, at any size, frozen or not, from files."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from segmodels import BACKBONES, build_model, list_decoders
from segmodels.cli.train import train
from tests.helpers import assert_scores_match_confusion, compose_train, tiny_overrides
from tests.segmodels.models.test_decoders import SMALL, VIT_ONLY, check_logits_and_gradients

# one small model per family the issue names; two blocks each keep the tests fast (random init)
FAMILIES = ["vit_small_patch16_224", "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
            "vit_small_patch16_dinov3", "samvit_base_patch16", "eva02_tiny_patch14_224", "vit_base_patch16_siglip_224"]
TWO_BLOCKS = {"depth": 2, "adapter_channels": 32}


@pytest.mark.parametrize("decoder", list_decoders())
@pytest.mark.parametrize("name", FAMILIES)
def test_every_vit_family_in_every_decoder_at_odd_sizes(name, decoder):
    if decoder in VIT_ONLY:  # EoMT: queries inside the blocks of a timm VisionTransformer, on its own tokens
        options = {"depth": 3, "adapter": "none"}
        if name.startswith(("samvit", "eva02")) or "dinov3" in name:  # windowed or rotary attention
            with pytest.raises(ValueError, match="rotary or windowed attention.*plain timm VisionTransformer"):
                build_model(name, decoder, 3, pretrained=False, backbone_kwargs=options, decoder_kwargs=SMALL.get(decoder))
            return
        model = build_model(name, decoder, 3, pretrained=False, backbone_kwargs=options, decoder_kwargs=SMALL.get(decoder))
        check_logits_and_gradients(model)
        return
    model = build_model(name, decoder, 3, pretrained=False, backbone_kwargs=TWO_BLOCKS, decoder_kwargs=SMALL.get(decoder))
    assert model.backbone.strides == [4, 8, 16, 32] and model.backbone.channels == [32] * 4
    check_logits_and_gradients(model)  # the adapter keeps only the branches of the levels the decoder reads


@pytest.mark.parametrize("in_channels", [1, 4])
def test_other_channel_counts(in_channels):
    model = build_model("vit_small_patch14_dinov2", "upernet", 3, in_channels=in_channels, pretrained=False,
                        backbone_kwargs=TWO_BLOCKS)
    check_logits_and_gradients(model, in_channels)


def test_the_adapter_trains_while_the_vit_is_frozen_and_frozen_stages_are_the_first_blocks():
    model = build_model("vit_small_patch16_224", "linear", 3, pretrained=False, backbone_kwargs=TWO_BLOCKS)
    model.freeze_backbone(bn_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.backbone.vit.parameters()) and not model.backbone.vit.training
    assert all(p.requires_grad for p in model.backbone.adapter.parameters()) and model.backbone.adapter.training
    model.frozen_stages = 1  # level 0 comes from block 0: the patch embedding and block 0 stay fixed
    model.unfreeze_backbone()
    frozen = {n for n, p in model.backbone.vit.named_parameters() if not p.requires_grad}
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "pos_embed"} <= frozen
    assert not any(n.startswith("blocks.1.") for n in frozen)
    assert all(p.requires_grad for p in model.backbone.adapter.parameters())


def test_statistics_come_from_the_model_config():
    assert BACKBONES.info("vit_base_patch16_siglip_224").mean == (0.5, 0.5, 0.5)
    assert BACKBONES.info("vit_small_patch14_dinov2").mean == (0.485, 0.456, 0.406)
    siglip = build_model("vit_base_patch16_siglip_224", "linear", 2, pretrained=False, backbone_kwargs=TWO_BLOCKS)
    assert siglip.mean == (0.5,) * 3


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_weights_file_loads_exactly_and_a_partial_one_is_refused(tmp_path, suffix):
    import timm

    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=2, num_classes=0)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / f"dinov2{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    backbone = build_model("vit_small_patch14_dinov2", "linear", 2, pretrained=False,
                           backbone_kwargs={**TWO_BLOCKS, "weights": str(path)}).backbone
    loaded = backbone.vit.state_dict()
    # every tensor the network keeps comes from the file (the final norm, used by no level, is pruned)
    assert set(loaded) == set(state) - {"norm.weight", "norm.bias"}
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())
    del state["blocks.1.mlp.fc2.weight"]
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    with pytest.raises(RuntimeError, match=r"do not fit: 1 weights left unloaded \['blocks.1.mlp.fc2.weight'\]"):
        build_model("vit_small_patch14_dinov2", "linear", 2, pretrained=False,
                    backbone_kwargs={**TWO_BLOCKS, "weights": str(path)})


def test_train_py_path_with_a_frozen_dinov2(tiny_demo, tmp_path):
    """backbone=dinov2_small composes and trains end to end; frozen, the ViT stays put and the adapter learns."""
    import lightning as L
    from hydra.utils import instantiate

    from segmodels.cli.train import build_module
    from segmodels.training.callbacks import FreezeBackbone

    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone=dinov2_small", "backbone.pretrained=false",
                                       "backbone.depth=2", "decoder=linear", "callbacks.freeze.unfreeze_at_epoch=-1"))
    assert_scores_match_confusion(train(cfg))
    module = build_module(cfg, 4, None)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[FreezeBackbone(unfreeze_at_epoch=-1)], limit_val_batches=0)
    trainer.fit(module, datamodule=instantiate(cfg.dataset))
    after = module.state_dict()
    vit = [k for k in before if k.startswith("model.backbone.vit.")]
    adapter = [k for k in before if k.startswith("model.backbone.adapter.") and k.endswith("weight")]
    assert vit and all(torch.equal(before[k], after[k]) for k in vit)  # the frozen ViT did not move
    assert adapter and any(not torch.equal(before[k], after[k]) for k in adapter)  # the adapter learned


def test_without_the_adapter_the_levels_are_the_normalised_blocks_for_a_linear_probe():
    model = build_model("vit_small_patch14_dinov2", "linear", 3, pretrained=False,
                        backbone_kwargs={"depth": 2, "adapter": "none"})
    # DINOv2's probe reads get_intermediate_layers(norm=True): each block's tokens through the final LayerNorm
    # (given weights other than 1 and 0, so applying it is visible)
    norm = model.backbone.vit.norm
    norm.weight.data.uniform_(0.5, 2.0)
    norm.bias.data.uniform_(-1.0, 1.0)
    x = torch.randn(1, 3, 56, 70)
    with torch.no_grad():
        levels = model.backbone(x)
        tokens = model.backbone.vit.forward_intermediates(x, indices=[0, 1], norm=False, intermediates_only=True)
    for level, block in zip(levels, [tokens[b] for b in model.backbone.blocks]):
        expected = norm(block.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert torch.allclose(level, expected, atol=1e-5)
    assert model.backbone.channels == [384] * 4 and model.backbone.strides == [14] * 4 and model.backbone.fresh == ()
    assert sum(p.numel() for p in model.decoder.parameters()) == 4 * 384 * 2 + 4 * 384 * 3 + 3  # BatchNorm + 1x1 conv
    check_logits_and_gradients(model)
    with pytest.raises(ValueError, match="backbone.adapter='fpn': choose one of simple_pyramid, none"):
        build_model("vit_small_patch14_dinov2", "linear", 3, pretrained=False, backbone_kwargs={"depth": 2, "adapter": "fpn"})
