"""The GPU figures in one command, ready before a GPU is: ``python benchmarks/gpu.py`` (under 8 minutes on one
H100/H200) writes ``benchmarks/results/gpu.json``; ``python benchmarks/gpu.py --smoke`` runs the same code on the CPU
at tiny sizes in seconds (the tests run it, so the script is known to work the day it meets a GPU).

What it measures, each in one section of the JSON:
- ``peak``: the device's bf16 matmul throughput (TFLOP/s), square matrices, best of a few sizes;
- ``train``: images/s of a full training step (forward, backward, AdamW) in bf16 autocast and channels-last, with
  and without ``torch.compile``, for U-Net ResNet-50, DeepLabV3+ ResNet-50 at output stride 8 and ViT-B + UPerNet
  at 512 px (``--smoke``: tiny stand-ins, and torch.compile with the eager backend, which traces but does not
  generate code); MFU = 3 x forward FLOPs per image (torch's FlopCounterMode) x images/s / peak; peak memory;
- ``inference``: eval-mode images/s in bf16 for the same models;
- ``loader``: images/s of the real training loader (decode, augment, collate) on generated 500 x 500 JPEGs at 4, 8
  and 16 workers, against the fastest model's consumption;
- ``projection``: hours for mmsegmentation's 40k-iteration DeepLabV3+ schedule (batch 16) at the measured rate.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules import VOCSegmentationDataModule, make_demo_dataset  # noqa: E402
from segmodels import build_model  # noqa: E402

MODELS = {  # name: (backbone, decoder, backbone options)
    "unet_resnet50": ("resnet50", "unet", {}),
    "deeplabv3plus_resnet50_os8": ("resnet50", "deeplabv3plus", {"output_stride": 8}),
    "upernet_vit_base": ("vit_base_patch16_224", "upernet", {}),
}
# --smoke: the same three entries as tiny networks (the code paths, not the figures, are what it checks)
SMOKE_MODELS = {
    "unet_resnet50": ("resnet18", "unet", {}),
    "deeplabv3plus_resnet50_os8": ("efficientnet_lite0", "deeplabv3plus", {"output_stride": 8}),
    "upernet_vit_base": ("vit_small_patch16_224", "upernet", {"depth": 2}),
}
SCHEDULE = {"iterations": 40_000, "batch": 16, "source": "mmsegmentation deeplabv3plus_r50-d8_4xb4-40k (4 GPUs x 4)"}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, warmup: int, repeats: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls, the median of ``repeats``."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def matmul_peak(device: torch.device, sizes: list[int], repeats: int) -> dict:
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        seconds = timed(lambda: a @ b, device, 2, repeats)
        best = max(best, 2 * n**3 / seconds / 1e12)
    return {"bf16_tflops": best, "sizes": sizes}


def forward_flops(model: torch.nn.Module, size: int, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        model(torch.randn(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last))
    return float(counter.get_total_flops())


def train_rate(name: str, args, device: torch.device, compiled: bool, peak: float) -> dict:
    backbone, decoder, options = (SMOKE_MODELS if args.smoke else MODELS)[name]
    torch.manual_seed(0)
    model = build_model(backbone, decoder, 21, pretrained=False, backbone_kwargs=options).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    flops = forward_flops(model.eval(), args.size, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 21, (args.batch, args.size, args.size), device=device)
    forward = torch.compile(model, backend=args.compile_backend) if compiled else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, device, args.warmup, args.repeats)
    rate = args.batch / seconds
    row = {"model": name, "compile": compiled, "batch": args.batch, "size": args.size, "step_s": seconds,
           "images_per_s": rate, "forward_gflop_per_image": flops / 1e9,
           "mfu": 3 * flops * rate / (peak * 1e12) if peak else None,
           "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
    if not compiled:
        forward.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            row["inference_images_per_s"] = args.batch / timed(lambda: forward(x), device, args.warmup, args.repeats)
    return row


def loader_rates(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = make_demo_dataset(Path(scratch) / "demo", splits={"train": args.loader_images, "val": 2},
                                 size=args.loader_image_size)
        for workers in args.workers:
            data = VOCSegmentationDataModule(str(root), num_classes=4, backbone="resnet50", crop_size=args.size,
                                             batch_size=args.batch, num_workers=workers, test_split=None,
                                             check_leakage=False)
            data.setup("fit")
            loader = data.train_dataloader()
            for _ in loader:  # warm-up pass: workers started, files cached
                pass
            started, seen = time.perf_counter(), 0
            for batch in loader:
                seen += len(batch["image"])
            rows.append({"workers": workers, "images_per_s": seen / (time.perf_counter() - started)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, seconds: the same code paths")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        settings = dict(size=64, batch=2, warmup=1, repeats=2, matmul=[512], loader_images=8, loader_image_size=96,
                        workers=[0, 2], compile_models=["unet_resnet50"], models=list(MODELS), compile_backend="eager")
    else:
        settings = dict(size=512, batch=16, warmup=5, repeats=20, matmul=[4096, 8192, 16384], loader_images=512,
                        loader_image_size=500, workers=[4, 8, 16], compile_models=list(MODELS), models=list(MODELS),
                        compile_backend="inductor")
    vars(args).update(settings)
    args.out = args.out or ("benchmarks/results/gpu_smoke.json" if args.smoke else "benchmarks/results/gpu.json")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    peak = matmul_peak(device, args.matmul, args.repeats)
    print(f"bf16 matmul peak: {peak['bf16_tflops']:.1f} TFLOP/s", flush=True)
    train = []
    for name in args.models:
        for compiled in (False, True) if name in args.compile_models else (False,):
            row = train_rate(name, args, device, compiled, peak["bf16_tflops"])
            train.append(row)
            print(f"{name:<28} compile={compiled!s:<5} {row['images_per_s']:8.1f} img/s  MFU "
                  f"{(row['mfu'] or 0) * 100:5.1f}%", flush=True)
    loader = loader_rates(args)
    fastest = max(row["images_per_s"] for row in train)
    deeplab = [r["images_per_s"] for r in train if r["model"].startswith("deeplabv3plus")] or [fastest]
    result = {
        "machine": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                    "torch": torch.__version__, "smoke": args.smoke},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "peak": peak, "train": train, "loader": loader,
        "loader_vs_model": {"fastest_model_images_per_s": fastest,
                            "loader_images_per_s": {r["workers"]: r["images_per_s"] for r in loader}},
        "projection": {**SCHEDULE, "hours": SCHEDULE["iterations"] * SCHEDULE["batch"] / max(deeplab) / 3600},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
