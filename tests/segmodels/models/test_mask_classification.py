"""Mask2Former and EoMT: the set loss (matching, ignored pixels, empty masks), the semantic inference, EoMT's mask
annealing, and the heads through train.py, evaluate.py, predict.py and export.py."""
from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from segmodels import SegmentationModule, build_model
from segmodels.cli.evaluate import evaluate
from segmodels.cli.export import export
from segmodels.cli.predict import predict_folder
from segmodels.cli.train import train
from segmodels.models.decoders.eomt import annealed
from segmodels.models.decoders.mask_classifier import MaskClassifier
from segmodels.models.decoders.mask_loss import MaskClassificationLoss, MaskPredictions, segments_of, semantic_scores
from tests.helpers import compose_train, tiny_overrides

SMALL_M2F = {"queries": 8, "width": 64, "layers": 3, "pixel_layers": 1, "feedforward": 64, "pixel_feedforward": 64,
             "num_points": 256}
SMALL_EOMT = {"queries": 8, "num_blocks": 2, "num_points": 256}
VIT = {"adapter": "none", "depth": 3}


def brute_force_cost(cost: np.ndarray) -> float:
    """The least total cost over every assignment of segments (columns) to distinct queries (rows)."""
    rows, columns = cost.shape
    return min(cost[list(chosen), range(columns)].sum() for chosen in permutations(range(rows), columns))


def test_matching_finds_the_least_cost_assignment_as_brute_force_does():
    criterion = MaskClassificationLoss(num_classes=4, num_points=200)
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 4, (1, 12, 12), generator=generator)
        labels[0, :3] = 255
        prediction = MaskPredictions(torch.randn(1, 5, 5, generator=generator), torch.randn(1, 5, 6, 6, generator=generator))
        segments = [segments_of(labels[0], 255)]
        torch.manual_seed(seed)
        (cost,) = criterion.costs(prediction, labels, segments, 255)
        torch.manual_seed(seed)  # the same random points
        ((queries, chosen),) = criterion.match(prediction, labels, segments, 255)
        assert sorted(chosen.tolist()) == list(range(len(segments[0])))  # every segment matched once
        assert len(set(queries.tolist())) == len(queries)
        matched = cost[queries, chosen].sum().item()
        assert matched == pytest.approx(brute_force_cost(cost.numpy()), abs=1e-5)


def test_a_perfect_query_is_matched_to_its_segment():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 2  # two segments: class 0 left, class 2 right
    masks = torch.full((1, 3, 8, 8), -8.0)
    masks[0, 2, :, :4] = 8.0  # query 2 predicts the left half
    masks[0, 0, :, 4:] = 8.0  # query 0 the right half
    classes = torch.full((1, 3, 4), -8.0)
    classes[0, 2, 0] = classes[0, 0, 2] = classes[0, 1, 3] = 8.0  # query 1: no object
    criterion = MaskClassificationLoss(num_classes=3, num_points=256)
    ((queries, chosen),) = criterion.match(MaskPredictions(classes, masks), labels, [segments_of(labels[0], 255)], 255)
    assert dict(zip(chosen.tolist(), queries.tolist())) == {0: 2, 1: 0}


def test_semantic_inference_is_class_probability_times_mask_probability_summed_over_queries():
    classes = torch.tensor([[[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]])  # 2 queries, 2 classes + no object
    masks = torch.tensor([[[[0.0, 3.0]], [[-1.0, 1.0]]]])  # 2 queries, a 1 x 2 map
    e, sig = math.exp, lambda v: 1 / (1 + math.exp(-v))
    p = [[e(1) / (e(1) + 1 + e(-1)), 1 / (e(1) + 1 + e(-1))], [1 / (2 + e(2)), e(2) / (2 + e(2))]]
    expected = [[sum(p[q][c] * sig(masks[0, q, 0, x].item()) for q in range(2)) for x in range(2)] for c in range(2)]
    scores = semantic_scores(MaskPredictions(classes, masks))
    assert scores.shape == (1, 2, 1, 2)
    assert torch.allclose(scores[0, :, 0], torch.tensor(expected), atol=1e-6)


def test_where_every_mask_is_nearly_off_the_classes_keep_their_ranking():
    """Scores far below 1e-8 (every mask logit -20 or less) still rank and normalise as the reference's do."""
    classes = torch.tensor([[[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # class 2 is the first query's best
    masks = torch.tensor([[[[-30.0, -25.0]], [[-40.0, -20.0]]]])

    class Fixed(MaskClassifier):
        def sets(self, levels):
            return [MaskPredictions(classes, masks)]

    ours = Fixed(num_classes=3).eval()([])
    scores = semantic_scores(MaskPredictions(classes, masks))  # the reference's sum, exact in float32 at these sizes
    assert scores.max() < 1e-8 and scores.argmax(1).tolist() == [[[2, 2]]]
    assert torch.allclose(ours.softmax(1), scores / scores.sum(1, keepdim=True), atol=1e-6)
    assert ours.argmax(1).tolist() == [[[2, 2]]]


def test_ignored_pixels_never_count():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[:, :6] = 255
    classes, masks = torch.randn(2, 4, 4), torch.randn(2, 4, 16, 16)
    criterion = MaskClassificationLoss(num_classes=3, num_points=400, importance=0.0)  # uniform points: comparable

    def loss_of(mask_logits):
        torch.manual_seed(1)
        return criterion([MaskPredictions(classes, mask_logits)], labels, 255)

    changed = masks.clone()
    # only inside the ignored rows 0-5, one row clear of the labelled ones (a point there interpolates rows 5 and 6)
    changed[:, :, :5] = torch.randn(2, 4, 5, 16) * 10
    assert loss_of(changed) == loss_of(masks)
    changed[:, :, 10:] += 5  # where labels count: the loss moves (the comparison can fail)
    assert loss_of(changed) != loss_of(masks)


@pytest.mark.parametrize("decoder,backbone,options,kwargs", [
    ("mask2former", "resnet18", None, SMALL_M2F), ("eomt", "vit_small_patch16_224", VIT, SMALL_EOMT)])
def test_batch_of_one_with_an_all_ignore_mask_trains_every_weight_it_can(decoder, backbone, options, kwargs):
    torch.manual_seed(0)
    model = build_model(backbone, decoder, 3, pretrained=False, backbone_kwargs=options, decoder_kwargs=kwargs).train()
    x = torch.randn(1, 3, 67, 71)
    ignored = torch.full((1, 67, 71), 255)
    loss = model.training_loss(model.backbone(model.pad(x)), ignored, None, 255)
    assert torch.isfinite(loss)
    loss.backward()  # only "no object" to learn; every mask weight is still in the graph (DDP needs that)
    assert model.decoder.classifier.weight.grad.abs().sum() > 0
    model.zero_grad()
    labels = torch.randint(0, 3, (1, 67, 71))
    model.training_loss(model.backbone(model.pad(x)), labels, None, 255).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_eomt_anneals_each_blocks_mask_in_its_own_stretch_and_infers_unmasked():
    assert [annealed(f, 0.25, 0.5) for f in (0.0, 0.25, 0.5, 0.9)] == [1.0, 1.0, 0.0, 0.0]
    assert annealed(0.375, 0.25, 0.5) == pytest.approx(0.5 ** 0.9)
    torch.manual_seed(0)
    model = build_model("vit_small_patch16_224", "eomt", 3, pretrained=False, backbone_kwargs={**VIT, "depth": 6},
                        decoder_kwargs={**SMALL_EOMT, "num_blocks": 4})
    model.set_progress(0.5)  # blocks anneal over [1/6, 2/6], [2/6, 3/6], [3/6, 4/6], [4/6, 5/6]
    assert model.decoder.keep_probability == [0.0, 0.0, 1.0, 1.0]
    model.set_progress(1.0)
    assert model.decoder.keep_probability == [0.0] * 4
    x = torch.randn(2, 3, 48, 48)
    levels = model.backbone(model.pad(x))
    model.train()
    assert len(model.decoder.sets(levels)) == 5  # one before each of the 4 blocks + the final: deep supervision
    model.decoder.progress(0.0)
    masked = model.decoder.sets(levels)[-1].masks
    model.decoder.progress(1.0)
    assert not torch.allclose(masked, model.decoder.sets(levels)[-1].masks)  # the masks do change attention
    model.eval()
    with torch.no_grad():
        unmasked = model(x)
        model.decoder.progress(0.0)
        assert torch.equal(model(x), unmasked)  # inference never masks
        assert len(model.decoder.sets(levels)) == 1
    assert model.backbone.vit.blocks[-1].attn.qkv.weight in set(model.backbone.parameters())  # still the backbone's


@pytest.mark.slow
@pytest.mark.parametrize("decoder,backbone,extra", [
    ("mask2former", "resnet18", [f"decoder.{k}={v}" for k, v in SMALL_M2F.items()]),
    ("eomt", "vit_small", ["backbone.adapter=none", "backbone.depth=3"] + [f"decoder.{k}={v}" for k, v in SMALL_EOMT.items()]),
])
def test_trained_heads_evaluate_predict_and_export(decoder, backbone, extra, tiny_demo, tmp_path):
    cfg = compose_train(tiny_overrides(tiny_demo, tmp_path / "run", f"decoder={decoder}", f"backbone={backbone}",
                                       "backbone.pretrained=false", "trainer.max_epochs=1", *extra))
    metrics = train(cfg)
    checkpoint = metrics["best_checkpoint"]
    scores = evaluate(checkpoint, tmp_path / "evaluation", flip=True, scales=(0.75, 1.0))
    assert scores["mIoU"] == pytest.approx(np.nanmean([v for v in scores["iou"].values() if v is not None]), abs=1e-6)
    written = predict_folder(checkpoint, str(tiny_demo / "JPEGImages"), str(tmp_path / "masks"))
    assert len(written) > 0
    assert "ONNX Runtime matches PyTorch" in export(checkpoint, str(tmp_path / "model.onnx"),
                                                    str(tiny_demo / "JPEGImages" / "test_0001.jpg"))
    module = SegmentationModule.restore(checkpoint)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 40, 56) * 255  # another size than the one exported with
    (exported,) = session.run(None, {"image": x.numpy()})
    mean, std = torch.tensor(module.mean).view(1, 3, 1, 1), torch.tensor(module.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = module((x / 255 - mean) / std)
    assert exported.shape == (1, 4, 40, 56)
    assert np.abs(exported - expected.numpy()).max() < 1e-3


def test_training_tells_eomt_how_far_it_is_every_step():
    import lightning as L
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    module = SegmentationModule(backbone="vit_small_patch16_224", decoder="eomt", num_classes=3, pretrained=False,
                                backbone_kwargs=VIT, decoder_kwargs={**SMALL_EOMT, "num_blocks": 1}, log_images=0)
    samples = [{"image": torch.randn(3, 32, 32), "mask": torch.randint(0, 3, (32, 32))} for _ in range(4)]
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(list(pl_module.model.decoder.keep_probability))

    L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[Record()]).fit(module, DataLoader(samples, batch_size=1))
    # one block anneals over [1/3, 2/3] of the 4 steps: fractions 0, 1/4, 1/2, 3/4
    assert seen == [[annealed(f, 1 / 3, 2 / 3)] for f in (0.0, 0.25, 0.5, 0.75)]
    assert seen[2][0] not in (0.0, 1.0)


def test_eomt_blocks_are_recomputed_in_backward_with_gradient_checkpointing():
    torch.manual_seed(0)
    model = build_model("vit_small_patch16_224", "eomt", 3, pretrained=False,
                        backbone_kwargs={**VIT, "grad_checkpointing": True}, decoder_kwargs={**SMALL_EOMT, "num_blocks": 1})
    calls = [0] * len(model.backbone.vit.blocks)
    for index, block in enumerate(model.backbone.vit.blocks):
        block.register_forward_pre_hook(lambda *_, i=index: calls.__setitem__(i, calls[i] + 1))
    model.train()
    loss = model.training_loss(model.backbone(model.pad(torch.randn(1, 3, 32, 32))), torch.randint(0, 3, (1, 32, 32)),
                               None, 255)
    assert calls == [1, 1, 1]
    loss.backward()
    assert calls == [2, 2, 2]  # the two backbone blocks and the one with the queries, each run again


def test_eomt_works_with_lora_layer_decay_and_a_deep_copy_as_ema_takes():
    import copy

    from segmodels.training.optimizers import build_optimizer_from_settings

    torch.manual_seed(0)
    model = build_model("vit_small_patch16_224", "eomt", 3, pretrained=False,
                        backbone_kwargs={**VIT, "lora_rank": 4}, decoder_kwargs={**SMALL_EOMT, "num_blocks": 1})
    last = model.backbone.vit.blocks[-1]
    lora = [n for n, p in last.named_parameters() if "lora" in n and p.requires_grad]
    assert lora and not last.attn.qkv.base_layer.weight.requires_grad  # the queries' block is LoRA'd like the rest
    optimizer = build_optimizer_from_settings(model, {"name": "adamw", "lr": 1.0, "layer_decay": 0.5}, None)
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(model.decoder.queries.weight)] == 1.0  # the queries and heads: the decoder's rate
    lora_a = dict(last.named_parameters())[lora[0]]
    assert rates[id(lora_a)] == 0.5  # the last block: one decay step below the decoder
    twin = copy.deepcopy(model).eval()  # EMA averages a deep copy: it must run its own backbone's blocks
    assert twin.decoder._host[0] is twin.backbone
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))
        next(twin.backbone.vit.blocks[-1].parameters()).add_(1.0)
        assert not torch.equal(twin(x), model(x))


def test_bad_settings_are_refused_naming_the_option_and_the_fix(tmp_path):
    from datamodules import VOCSegmentationDataModule

    with pytest.raises(ValueError, match="sized from the ViT's own tokens: set backbone.adapter=none"):
        build_model("vit_small_patch16_224", "eomt", 3, pretrained=False, backbone_kwargs={"depth": 2},
                    decoder_kwargs=SMALL_EOMT)
    with pytest.raises(ValueError, match="decoder.num_blocks=5: the ViT has 3 blocks"):
        build_model("vit_small_patch16_224", "eomt", 3, pretrained=False, backbone_kwargs=VIT,
                    decoder_kwargs={**SMALL_EOMT, "num_blocks": 5})
    with pytest.raises(ValueError, match="own set loss, which takes no class_weights; drop class_weights"):
        SegmentationModule(backbone="resnet18", decoder="mask2former", num_classes=3, pretrained=False,
                           decoder_kwargs=SMALL_M2F, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"mean=\[0.5\] and std=\[0.2\] need one value per input channel \(in_channels=3\)"):
        build_model("resnet18", "fpn", 3, pretrained=False, mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match="dataset.palette='ade': choose one of voc, cityscapes"):
        VOCSegmentationDataModule(str(tmp_path), num_classes=3, backbone="resnet18", palette="ade")
    with pytest.raises(ValueError, match=r"dataset.label_ids=true: no label-id table is known for masks '\*.png'.*"
                                         "dataset.mask_value_map"):
        VOCSegmentationDataModule(str(tmp_path), num_classes=3, backbone="resnet18", label_ids=True)


@pytest.mark.parametrize("decoder, backbone, options, kwargs", [
    ("mask2former", "resnet18", None, SMALL_M2F), ("eomt", "vit_small_patch16_224", VIT, SMALL_EOMT)])
def test_inference_resizes_each_querys_mask_to_the_input_before_combining(decoder, backbone, options, kwargs):
    """As Mask2Former's and EoMT's references: masks to the image first, then class x mask summed over queries."""
    torch.manual_seed(0)
    model = build_model(backbone, decoder, 3, pretrained=False, backbone_kwargs=options, decoder_kwargs=kwargs).eval()
    x = torch.randn(1, 3, 67, 71)
    with torch.no_grad():
        ours = model(x)
        padded = model.pad(x)
        final = model.decoder.sets(model.backbone(padded))[-1]
        masks = torch.nn.functional.interpolate(final.masks, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        by_hand = semantic_scores(MaskPredictions(final.classes, masks)).log()[..., :67, :71]
        combined_first = torch.nn.functional.interpolate(semantic_scores(final), size=padded.shape[-2:],
                                                         mode="bilinear", align_corners=False)[..., :67, :71]
    assert ours.shape == (1, 3, 67, 71) and torch.allclose(ours, by_hand, atol=1e-6)
    assert not torch.allclose(ours.exp(), combined_first, atol=1e-4)  # the order matters


def test_the_pixel_decoder_runs_in_float32_under_bf16_autocast():
    model = build_model("resnet18", "mask2former", 3, pretrained=False, decoder_kwargs=SMALL_M2F).eval()
    levels = model.backbone(torch.randn(1, 3, 64, 64))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features, refined = model.decoder.pixel_decoder([level.bfloat16() for level in levels])
    assert features.dtype == torch.float32 and all(level.dtype == torch.float32 for level in refined)
    assert float(model.decoder.pixel_decoder.level_embedding.std()) > 0.5  # N(0, 1), the reference's
