"""Peak memory of one training step of a large ViT with its head, with the fine-tuning tools on and off.

    python benchmarks/memory.py                              # ViT-B/16 + upernet, 512 x 512, batch 2, CPU
    python benchmarks/memory.py --device cuda --batch-size 8

Each setting runs in a fresh process (so peaks do not mix): build the model (random weights; the weights do
not change the memory), one warm-up step, then a measured training step (forward, loss, backward, AdamW
step). Settings: full fine-tuning; with gradient checkpointing of the backbone's blocks; LoRA (rank 8, only
adapters, pyramid adapter and head train); LoRA + checkpointing; the backbone frozen. Memory on the CPU is
the process's peak RSS during the measured step minus its RSS before it (the model and optimiser state
already counted in the baseline are reported apart; glibc is told to map every tensor above 128 kB on its own,
so that freed activations leave the RSS); on a GPU, CUDA's peak allocation. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import rss_mb, write_results  # noqa: E402

SETTINGS = {
    "full": {},
    "grad_checkpointing": {"grad_checkpointing": True},
    "lora8": {"lora_rank": 8},
    "lora8+grad_checkpointing": {"lora_rank": 8, "grad_checkpointing": True},
    "frozen": {"frozen": True},
}


def measure(args: argparse.Namespace) -> dict:
    from segmodels import build_model

    options = dict(SETTINGS[args.setting])
    frozen = options.pop("frozen", False)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.backbone, args.decoder, 21, pretrained=False, backbone_kwargs=options).to(device)
    if frozen:
        model.freeze_backbone()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    target = torch.randint(0, 21, (args.batch_size, args.size, args.size), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # optimiser state exists from here on
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated() / 2**20
    else:
        baseline = rss_mb()
    started = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB, whole life of the process
    return {
        "setting": args.setting,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "before_step_mb": round(baseline, 1),
        "step_peak_mb": round(peak, 1),
        "step_extra_mb": round(peak - baseline, 1),
        "step_seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_224")
    parser.add_argument("--decoder", default="upernet")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--setting", help=argparse.SUPPRESS)  # the child process's one setting
    parser.add_argument("--out", default="benchmarks/results/memory_vit.json")
    args = parser.parse_args()
    if args.setting:
        print(json.dumps(measure(args)))
        return
    rows = []
    for setting in args.settings:
        command = [sys.executable, __file__, "--setting", setting, "--backbone", args.backbone, "--decoder", args.decoder,
                   "--size", str(args.size), "--batch-size", str(args.batch_size), "--device", args.device]
        # tensors above 128 kB get their own mapping and go back to the OS when freed: RSS follows live tensors
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    write_results(args, rows, torch.device(args.device))
    full = rows[0]["step_extra_mb"] if rows[0]["setting"] == "full" else None
    print(f"\n{args.backbone} + {args.decoder}, {args.size} x {args.size}, batch {args.batch_size}, {args.device}:\n")
    print("| setting | trainable parameters | memory before the step (MB) | step's extra memory (MB) | vs full | s/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ratio = f"{row['step_extra_mb'] / full:.2f}" if full else ""
        print(f"| {row['setting']} | {row['trainable'] / 1e6:.1f} M of {row['parameters'] / 1e6:.1f} M | "
              f"{row['before_step_mb']:.0f} | {row['step_extra_mb']:.0f} | {ratio} | {row['step_seconds']:.1f} |")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
