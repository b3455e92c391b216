"""Our SegFormer (``backbone=mit_b0 decoder=segformer``) against transformers' ``SegformerForSemanticSegmentation`` and
segmentation_models_pytorch's ``Segformer``, the same configuration, interleaved in one run on this CPU.

    pip install -e ".[benchmark]"
    python benchmarks/segformer_peer.py                       # the figures in docs/benchmarks.md
    python benchmarks/segformer_peer.py --size 128 --rounds 2

All three: MiT-B0 (widths 32-64-160-256, depths 2-2-2-2), the all-MLP head 256 wide, 21 classes, random weights. A
training step is forward + cross-entropy on the logits upsampled to the input + backward (AdamW's step left out: it
is the same for all); inference is the forward to logits at the input's size. Each round times ours, then
transformers', then smp's; the JSON has every round, the medians and the spread of the per-round ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import build_model  # noqa: E402


def peers(classes: int) -> dict[str, torch.nn.Module]:
    import segmentation_models_pytorch as smp
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256,
                             num_labels=classes)
    transformers_model = SegformerForSemanticSegmentation(config)
    smp_model = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=classes,
                              decoder_segmentation_channels=256)
    return {"transformers": transformers_model, "smp": smp_model}


def logits_of(name: str, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits at the input's size, however the model gives them."""
    if name == "transformers":
        out = model(pixel_values=images).logits
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return model(images)


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/segformer_peer.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"ours": build_model("mit_b0", "segformer", args.classes, pretrained=False,
                                  backbone_kwargs={"norm_eps": 1e-5}), **peers(args.classes)}
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, args.classes, (args.batch, args.size, args.size))

    def train(name: str):
        def step() -> None:
            model = models[name]
            model.zero_grad(set_to_none=True)
            F.cross_entropy(logits_of(name, model, images), labels).backward()
        return step

    def infer(name: str):
        def step() -> None:
            with torch.no_grad():
                logits_of(name, models[name], images)
        return step

    rounds = []
    for index in range(args.rounds + 1):  # the first round warms all up and is not counted
        row = {}
        for name, model in models.items():
            model.train()
            row[f"{name}_train_s"] = timed(train(name))
        for name, model in models.items():
            model.eval()
            row[f"{name}_infer_s"] = timed(infer(name))
        if index:
            rounds.append(row)
            print({k: round(v, 3) for k, v in row.items()}, flush=True)
    summary = {}
    for phase in ("train", "infer"):
        for peer in ("transformers", "smp"):
            ratios = [r[f"{peer}_{phase}_s"] / r[f"ours_{phase}_s"] for r in rounds]
            summary[f"{phase}_vs_{peer}"] = {
                "ours_median_s": statistics.median(r[f"ours_{phase}_s"] for r in rounds),
                "peer_median_s": statistics.median(r[f"{peer}_{phase}_s"] for r in rounds),
                "speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios)}
            entry = summary[f"{phase}_vs_{peer}"]
            print(f"{phase}: ours {entry['ours_median_s']:.3f} s, {peer} {entry['peer_median_s']:.3f} s, ours "
                  f"x{entry['speedup_median']:.2f} (rounds {min(ratios):.2f}..{max(ratios):.2f})")
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    print("parameters", parameters)
    write_results(args, [{"rounds": rounds, "summary": summary, "parameters": parameters}], torch.device("cpu"))


if __name__ == "__main__":
    main()
