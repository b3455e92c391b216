"""Our Mask2Former against Hugging Face transformers' ``Mask2FormerForUniversalSegmentation``, same configuration,
same input, interleaved in one run on this CPU.

    python benchmarks/mask2former_peer.py                      # the figures in docs/benchmarks.md
    python benchmarks/mask2former_peer.py --size 128 --rounds 2

Both: ResNet-50 (ours torchvision's, the peer its own ResNet of the same architecture: depths 3-4-6-3, bottleneck
widths 256..2048), random weights, 6 deformable encoder layers, 9 masked-attention layers (the peer's
``decoder_layers=10`` counts the queries' start), 100 queries, 256 wide, 12,544 points, deep supervision. A training
step is forward + set loss + backward on a batch of ``--batch`` images with ``--segments`` segments each (the peer gets
the binary masks and classes it needs, made before timing; ours finds segments in the label map inside its loss);
inference is the forward to per-pixel class scores (ours' output; the peer's ``class_queries_logits`` and
``masks_queries_logits`` combined the same way). Each round times ours then the peer; the JSON has every round, the
medians and the spread of the per-round ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import build_model  # noqa: E402


def peer_model(num_classes: int) -> torch.nn.Module:
    backbone = ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, num_labels=num_classes, num_queries=100, hidden_dim=256,
                               mask_feature_size=256, encoder_layers=6, decoder_layers=10, dim_feedforward=2048,
                               encoder_feedforward_dim=1024, train_num_points=12544, use_auxiliary_loss=True)
    return Mask2FormerForUniversalSegmentation(config)


def labels_of(batch: int, size: int, segments: int, num_classes: int) -> torch.Tensor:
    """Label maps of ``segments`` vertical bands, each a different class."""
    labels = torch.empty(batch, size, size, dtype=torch.long)
    for i in range(batch):
        classes = torch.randperm(num_classes)[:segments]
        bands = torch.arange(size) * segments // size
        labels[i] = classes[bands][None, :].expand(size, -1)
    return labels


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/mask2former_peer.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = build_model("resnet50", "mask2former", args.classes, pretrained=False)
    peer = peer_model(args.classes)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = labels_of(args.batch, args.size, args.segments, args.classes)
    classes = [image.unique() for image in labels]
    masks = [(image[None] == c[:, None, None]).float() for image, c in zip(labels, classes)]

    def ours_train() -> None:
        ours.zero_grad(set_to_none=True)
        ours.training_loss(ours.backbone(images), labels, None, 255).backward()

    def peer_train() -> None:
        peer.zero_grad(set_to_none=True)
        peer(pixel_values=images, mask_labels=masks, class_labels=classes).loss.backward()

    def ours_infer() -> None:
        with torch.no_grad():
            ours(images)

    def peer_infer() -> None:
        with torch.no_grad():
            out = peer(pixel_values=images)
            scores = torch.einsum("nqc,nqhw->nchw", out.class_queries_logits.softmax(-1)[..., :-1],
                                  out.masks_queries_logits.sigmoid())
            torch.nn.functional.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)

    rounds = []
    for index in range(args.rounds + 1):  # the first round warms both up and is not counted
        ours.train(), peer.train()
        row = {"ours_train_s": timed(ours_train), "peer_train_s": timed(peer_train)}
        ours.eval(), peer.eval()
        row.update(ours_infer_s=timed(ours_infer), peer_infer_s=timed(peer_infer))
        if index:
            rounds.append(row)
            print({k: round(v, 3) for k, v in row.items()}, flush=True)
    summary = {}
    for phase in ("train", "infer"):
        ratios = [r[f"peer_{phase}_s"] / r[f"ours_{phase}_s"] for r in rounds]
        summary[phase] = {"ours_median_s": statistics.median(r[f"ours_{phase}_s"] for r in rounds),
                          "peer_median_s": statistics.median(r[f"peer_{phase}_s"] for r in rounds),
                          "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
                          "speedup_max": max(ratios)}
        print(f"{phase}: ours {summary[phase]['ours_median_s']:.3f} s, transformers "
              f"{summary[phase]['peer_median_s']:.3f} s, ours x{summary[phase]['speedup_median']:.2f} "
              f"(rounds {min(ratios):.2f}..{max(ratios):.2f})")
    parameters = {"ours": sum(p.numel() for p in ours.parameters()), "peer": sum(p.numel() for p in peer.parameters())}
    print("parameters", parameters)
    write_results(args, [{"rounds": rounds, "summary": summary, "parameters": parameters}], torch.device("cpu"))


if __name__ == "__main__":
    main()
