"""Training speed of our heads against segmentation_models_pytorch's, same encoder, in one process.

    python benchmarks/decoder_speed.py                       # resnet50, 256 x 256, batch 2, CPU
    python benchmarks/decoder_speed.py --size 512 --batch-size 16 --device cuda

For each architecture (DeepLabV3+, FPN, UPerNet, SegFormer head) both models are trained by the same
plain loop (AdamW, cross-entropy, the same batches from memory) and timed step by step, interleaved
round by round after a warm-up, so machine noise hits both alike. The widths are set to match where
the architectures allow (smp's defaults: 256/48 for DeepLabV3+, separable in both, 256/128 for FPN,
256 for UPerNet and SegFormer); the layers that still differ are listed in the JSON, and the training
GFLOPs of one image (torch.utils.flop_counter, forward + backward) let the speeds be compared per FLOP.
Needs the ``[benchmark]`` extra. Writes JSON and prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import build_model  # noqa: E402

# ours (decoder name, options) against smp (class name, options), on the same encoder at smp's output stride
# (16 for DeepLabV3+, 32 for the others)
PAIRS = {
    "deeplabv3plus": (("deeplabv3plus", {"decoder_channels": 256, "skip_channels": 48}),
                      ("DeepLabV3Plus", {"decoder_channels": 256}),
                      "both depthwise-separable in ASPP and the decoder (the defaults); smp: one separable 3x3 conv "
                      "after the concatenation (ours: two, the paper's), no BatchNorm and ReLU between depthwise and "
                      "pointwise; ours: no BatchNorm in image pooling"),
    "fpn": (("fpn", {"pyramid_channels": 256, "decoder_channels": 128}),
            ("FPN", {"decoder_pyramid_channels": 256, "decoder_segmentation_channels": 128}),
            "ours: the 3x3 output conv on each pyramid map (Lin et al.; detectron2's Panoptic FPN), which smp omits; "
            "smp: nearest upsampling in the pyramid, dropout 0.2; ours bilinear, 0.1"),
    "upernet": (("upernet", {"decoder_channels": 256}), ("UPerNet", {"decoder_channels": 256}),
                "same structure; ours: no BatchNorm in the 1x1 pooling branch"),
    "segformer": (("segformer", {"decoder_channels": 256}), ("Segformer", {"decoder_segmentation_channels": 256}),
                  "same structure (smp projects each level by a 1x1 conv + BatchNorm + ReLU; "
                  "ours by a linear 1x1 conv, as the paper)"),
}


def ours(decoder: str, options: dict, encoder: str, classes: int) -> torch.nn.Module:
    output_stride = 16 if decoder == "deeplabv3plus" else 32
    return build_model(encoder, decoder, classes, pretrained=False, decoder_kwargs=options,
                       backbone_kwargs={"output_stride": output_stride})


def peer(name: str, options: dict, encoder: str, classes: int) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    extra = {"encoder_output_stride": 16} if name == "DeepLabV3Plus" else {}
    return getattr(smp, name)(encoder_name=encoder, encoder_weights=None, classes=classes, **options, **extra)


def training_gflops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Forward + backward FLOPs per image, counted on a whole batch (BatchNorm on pooled maps needs two)."""
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(batch["image"]), batch["mask"]).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9 / len(batch["image"])


def steps(model, optimizer, data, device) -> list[float]:
    times = []
    for batch in data:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--architectures", nargs="*", default=list(PAIRS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/decoder_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    data = [{"image": torch.randn(args.batch_size, 3, args.size, args.size, device=device),
             "mask": torch.randint(0, args.classes, (args.batch_size, args.size, args.size), device=device)}
            for _ in range(args.steps)]
    variants = {}
    for arch in args.architectures:
        (decoder, ours_options), (smp_name, smp_options), _ = PAIRS[arch]
        for side, model in (("ours", ours(decoder, ours_options, args.encoder, args.classes)),
                            ("smp", peer(smp_name, smp_options, args.encoder, args.classes))):
            model = model.to(device).train()
            variants[(arch, side)] = {"model": model, "optimizer": torch.optim.AdamW(model.parameters(), 1e-4),
                                      "gflops": training_gflops(model, data[0]), "rounds": [],
                                      "parameters": sum(p.numel() for p in model.parameters())}
    for variant in variants.values():  # warm-up
        steps(variant["model"], variant["optimizer"], data[:1], device)
    for _ in range(args.rounds):
        for variant in variants.values():
            variant["rounds"].append(statistics.median(steps(variant["model"], variant["optimizer"], data, device)))
    results = []
    print(f"{args.encoder}, {args.size} x {args.size}, batch {args.batch_size}, {args.device}; "
          f"median step per round, {args.rounds} rounds:\n")
    print("| architecture | ours images/s | smp images/s | ours / smp (min..max over rounds) | ours / smp training "
          "GFLOP per image | ours / smp GFLOP/s | ours / smp parameters |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.architectures:
        a, b = variants[(arch, "ours")], variants[(arch, "smp")]
        ratios = [tb / ta for ta, tb in zip(a["rounds"], b["rounds"])]  # speed ratio: smp time / our time
        speed = {side: args.batch_size / statistics.median(v["rounds"]) for side, v in (("ours", a), ("smp", b))}
        row = {"architecture": arch, "ours_images_per_s": speed["ours"], "smp_images_per_s": speed["smp"],
               "speed_ratio_median": statistics.median(ratios), "speed_ratio_min": min(ratios), "speed_ratio_max": max(ratios),
               "ours_training_gflop_per_image": a["gflops"], "smp_training_gflop_per_image": b["gflops"],
               "ours_gflop_per_s": speed["ours"] * a["gflops"], "smp_gflop_per_s": speed["smp"] * b["gflops"],
               "ours_parameters": a["parameters"], "smp_parameters": b["parameters"], "differences": PAIRS[arch][2],
               "ours_step_seconds": a["rounds"], "smp_step_seconds": b["rounds"]}
        results.append(row)
        print(f"| {arch} | {speed['ours']:.2f} | {speed['smp']:.2f} | **{row['speed_ratio_median']:.3f}** "
              f"({row['speed_ratio_min']:.3f}..{row['speed_ratio_max']:.3f}) | {a['gflops']:.1f} / {b['gflops']:.1f} | "
              f"{row['ours_gflop_per_s']:.0f} / {row['smp_gflop_per_s']:.0f} | "
              f"{a['parameters'] / 1e6:.1f} M / {b['parameters'] / 1e6:.1f} M |")
    write_results(args, results, device)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
