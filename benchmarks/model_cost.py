"""Parameters and forward GFLOPs of backbone/decoder pairs at a given input size.

    python benchmarks/model_cost.py                      # every backbone x every decoder, 512 x 512
    python benchmarks/model_cost.py --size 256 --pairs vgg16:unet resnet50:fcn8s
    python benchmarks/model_cost.py --trainable --pairs vit_small_patch16_224:upernet   # + trainable counts

``--trainable`` adds the parameters that train under full fine-tuning, with the backbone frozen (the decoder
and the backbone's new weights, e.g. a ViT's pyramid adapter), and with LoRA of rank 8 (``backbone.lora_rank=8``).

Models are built on the meta device, so nothing is computed and no weights are needed: the counts
come from torch.utils.flop_counter (one multiply-add = 2 FLOPs). Writes JSON and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segmodels import build_model, list_backbones, list_decoders  # noqa: E402


def trainable(backbone: str, decoder: str, num_classes: int) -> dict[str, int]:
    with torch.device("meta"):
        model = build_model(backbone, decoder, num_classes=num_classes, pretrained=False)
        lora = build_model(backbone, decoder, num_classes=num_classes, pretrained=False, backbone_kwargs={"lora_rank": 8})
    full = sum(p.numel() for p in model.parameters())
    model.freeze_backbone()
    return {"full": full, "frozen": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "lora8": sum(p.numel() for p in lora.parameters() if p.requires_grad)}


def cost(backbone: str, decoder: str, size: int, num_classes: int, with_trainable: bool = False) -> dict:
    with torch.device("meta"):
        model = build_model(backbone, decoder, num_classes=num_classes, pretrained=False).eval()
        x = torch.empty(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    extra = {"trainable": trainable(backbone, decoder, num_classes)} if with_trainable else {}
    return {**extra,
        "backbone": backbone,
        "decoder": decoder,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
        "size": size,
        "num_classes": num_classes,
    }


def print_grid(rows: list[dict], decoders: list[str], cell) -> None:
    """A markdown table, one row per backbone and one column per decoder, ``cell(row)`` in each."""
    print("| backbone | " + " | ".join(decoders) + " |")
    print("| --- |" + " --- |" * len(decoders))
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        found = {r["decoder"]: r for r in rows if r["backbone"] == backbone}
        print(f"| `{backbone}` | " + " | ".join(cell(found[d]) if d in found else "" for d in decoders) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--pairs", nargs="*", help="backbone:decoder pairs (default: the whole grid)")
    parser.add_argument("--trainable", action="store_true", help="also count trainable parameters: full, frozen, LoRA 8")
    parser.add_argument("--out", default="benchmarks/results/model_cost.json")
    args = parser.parse_args()
    pairs = [p.split(":") for p in args.pairs] if args.pairs else [(b, d) for b in list_backbones() for d in list_decoders()]
    rows = []
    for backbone, decoder in pairs:
        try:
            rows.append(cost(backbone, decoder, args.size, args.num_classes, args.trainable))
        except Exception as error:  # in the grid, a pair the factory refuses (EoMT outside a plain ViT) or that the
            if args.pairs:            # meta device cannot count (mask classification's set predictions) is left out
                raise
            print(f"left out {backbone}:{decoder}: {str(error).splitlines()[0][:120]}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    decoders = sorted({r["decoder"] for r in rows}, key=[d for _, d in pairs].index)
    print(f"Parameters (millions) / forward GFLOPs at {args.size} x {args.size}, {args.num_classes} classes:\n")
    print_grid(rows, decoders, lambda row: f"{row['parameters'] / 1e6:.1f} M / {row['gflops']:.0f}")
    if args.trainable:
        print("\nTrainable parameters (millions): full / backbone frozen / LoRA rank 8:\n")
        print_grid(rows, decoders, lambda row: "{full:.1f} / {frozen:.1f} / {lora8:.1f}".format(
            **{k: v / 1e6 for k, v in row["trainable"].items()}))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
