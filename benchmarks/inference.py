"""Inference speed of each engine: images/s of the default run's model (EfficientNet-Lite0 + U-Net, 4 classes) at
several sizes and batches, and the gain of batching sliding windows over a large image.

    python benchmarks/inference.py                                       # 64/512/1024 px, batch 1 and 4, CPU
    python benchmarks/inference.py --sizes 512 --batches 4 --window-image 0 --no-compile   # one quick row
    python benchmarks/inference.py --pair resnet50:unet --device cuda

Engines (``segmodels.io.engines``, what ``engine=`` picks in predict.py and evaluate.py): ``torch`` (eager, NCHW),
``torch+channels_last`` (eager, NHWC), ``compile`` (torch.compile, NHWC), ``torch+channels_last+bf16`` (autocast;
on CUDA, or with ``--bf16``) and ``onnxruntime`` (the graph export.py's
code writes, CPU provider unless ``--providers``). For each size and batch the engines run in turns, one timed call
each per round after a warm-up, so machine noise hits them alike; the figure is the median over rounds and the
ratio to ``torch`` comes with its spread (lowest..highest ratio of one round). The window rows time
``predict_probabilities`` over one ``--window-image`` square image with 512 x 512 windows at stride 384 (mmsegmentation's
grid), one window per forward pass against ``window_batch`` 4 and 8. Writes JSON, prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import SegmentationModule  # noqa: E402
from segmodels.io.engines import inference_engine  # noqa: E402
from segmodels.models.inference import predict_probabilities  # noqa: E402


def channels_last(model: torch.nn.Module):
    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x.contiguous(memory_format=torch.channels_last))
    return run


def timed(runner, x: torch.Tensor) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        runner(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bf16(model: torch.nn.Module, device: torch.device):
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model(x)
    return run


def engines(module: SegmentationModule, folder: Path, compiled: bool, providers: list[str] | None,
            with_bf16: bool) -> dict:
    import copy

    nhwc = copy.deepcopy(module.model).to(memory_format=torch.channels_last).eval()
    found = {"torch": module.model.eval(), "torch+channels_last": channels_last(nhwc)}
    if with_bf16:
        found["torch+channels_last+bf16"] = bf16(found["torch+channels_last"], module.device)
    if compiled:
        found["compile"] = channels_last(torch.compile(nhwc))
    found["onnxruntime"] = inference_engine(module, "onnxruntime", folder, providers=providers)[0]
    return found


def spread(ratios: list[float]) -> str:
    return f"{min(ratios):.2f}..{max(ratios):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="efficientnet_lite0:unet")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--window-image", type=int, default=2048, help="side of the sliding-window image; 0: none")
    parser.add_argument("--window-rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--providers", nargs="+", default=None, help="onnxruntime execution providers")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also eager bf16 autocast (on a CPU without native bf16 "
                                                           "instructions it is emulated, and slow)")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    backbone, decoder = args.pair.split(":")
    torch.manual_seed(0)
    module = SegmentationModule(backbone=backbone, decoder=decoder, num_classes=args.classes, pretrained=False)
    module = module.to(device).eval()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        runners = engines(module, Path(folder), not args.no_compile, args.providers,
                          args.bf16 or device.type == "cuda")
        for size in args.sizes:
            for batch in args.batches:
                x = torch.randn(batch, 3, size, size, device=device)
                for runner in runners.values():  # warm-up (compilation happens here)
                    for _ in range(args.warmup):
                        timed(runner, x)
                seconds = {name: [] for name in runners}
                for _ in range(args.rounds):
                    for name, runner in runners.items():
                        seconds[name].append(timed(runner, x))
                row = {"size": size, "batch": batch, "rounds": args.rounds}
                for name, values in seconds.items():
                    ratios = [t / s for t, s in zip(seconds["torch"], values)]
                    row[name] = {"images_per_s": batch / statistics.median(values), "seconds": values,
                                 "vs_torch": statistics.median(ratios), "vs_torch_spread": spread(ratios)}
                results.append(row)
                print(f"{size:>5} px batch {batch}: " + "  ".join(
                    f"{name} {row[name]['images_per_s']:.2f}/s x{row[name]['vs_torch']:.2f}" for name in runners),
                    flush=True)
        if args.window_image:
            image = torch.randn(1, 3, args.window_image, args.window_image, device=device)
            for name in ("torch", "onnxruntime"):
                runner = runners[name]
                seconds = {wb: [] for wb in (1, 4, 8)}
                for _ in range(args.window_rounds):
                    for wb in seconds:
                        start = time.perf_counter()
                        predict_probabilities(runner, image, tile=512, stride=384, window_batch=wb)
                        seconds[wb].append(time.perf_counter() - start)
                row = {"windows": f"{args.window_image}x{args.window_image}, tile 512, stride 384", "engine": name}
                for wb, values in seconds.items():
                    ratios = [a / b for a, b in zip(seconds[1], values)]
                    row[f"window_batch_{wb}"] = {"seconds": statistics.median(values), "all": values,
                                                 "vs_window_batch_1": statistics.median(ratios),
                                                 "spread": spread(ratios)}
                results.append(row)
                cells = [row[f"window_batch_{wb}"] for wb in seconds]
                print(f"windows {name}: " + "  ".join(f"batch {wb} {cell['seconds']:.1f} s x{cell['vs_window_batch_1']:.2f}"
                                                      for wb, cell in zip(seconds, cells)), flush=True)
    write_results(args, results, device)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
