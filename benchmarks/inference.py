"""Inference speed: images/s of an eval-mode forward at 512 x 512, plain and with each speed option.

    python benchmarks/inference.py                                   # resnet34 + unet, batch 2, on CPU
    python benchmarks/inference.py --pairs resnet50:unet vgg16:unet --batch-size 16 --device cuda

Variants: fp32; channels-last; bf16 autocast (on CUDA; on a CPU only with ``--cpu-bf16``, as most CPUs
emulate it slowly); torch.compile with channels-last (and with bf16 on CUDA). Warm-up iterations first
(compilation happens there), then the median of ``--repeats`` timed iterations. Writes JSON, prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import build_model  # noqa: E402


def seconds_per_batch(model, x: torch.Tensor, bf16: bool, warmup: int, repeats: int) -> float:
    device = x.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    times = []
    with torch.inference_mode(), autocast:
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["resnet34:unet"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-bf16", action="store_true", help="time bf16 autocast on a CPU too")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    bf16 = device.type == "cuda" or args.cpu_bf16
    results = []
    for pair in args.pairs:
        backbone, decoder = pair.split(":")
        model = build_model(backbone, decoder, num_classes=21, pretrained=False).to(device).eval()
        x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
        variants = [("fp32", False, False, False), ("channels_last", True, False, False)]
        if bf16:
            variants.append(("channels_last+bf16", True, True, False))
        if not args.no_compile:
            variants.append(("channels_last+compile", True, False, True))
            if device.type == "cuda":  # where bf16 pays: compiled with autocast as well
                variants.append(("channels_last+compile+bf16", True, True, True))
        row = {"pair": pair, "size": args.size, "batch_size": args.batch_size, "device": str(device)}
        for name, channels_last, use_bf16, compiled in variants:
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            model.to(memory_format=memory_format)  # in place: the same weights in NCHW or NHWC
            net = torch.compile(model) if compiled else model
            seconds = seconds_per_batch(net, x.contiguous(memory_format=memory_format), use_bf16, args.warmup, args.repeats)
            row[name] = {"images_per_s": args.batch_size / seconds, "seconds_per_batch": seconds}
        results.append(row)
    write_results(args, results, device)
    for row in results:
        base = row["fp32"]["images_per_s"]
        for name, value in row.items():
            if isinstance(value, dict):
                print(f"{row['pair']:<18}{name:<30}{value['images_per_s']:>9.2f} images/s  x{value['images_per_s'] / base:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
