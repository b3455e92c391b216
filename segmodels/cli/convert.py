"""``python convert.py source=<transformers folder> output=<model folder>``: a published checkpoint imported once into
this project's model folder (safetensors + config.json + model card), so nothing downstream needs transformers."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from segmodels.training.segmentation_module import SegmentationModule

# Published figures of checkpoints on the Hugging Face hub, with where they come from and how they were measured.
# Quoted, not measured here: python evaluate.py model=<folder> protocol=... reproduces them on the real dataset.
SEGFORMER_PAPER = "Xie et al. 2021, SegFormer, Table 1 (single scale)"
CONVNEXT_PAPER = "Liu et al. 2022, A ConvNet for the 2020s, UperNet on ADE20K (single scale)"
SWIN_MMSEG = "mmsegmentation configs/swin/metafile.yaml, the checkpoints transformers converted (single scale)"
MASK2FORMER_ZOO = "Mask2Former MODEL_ZOO.md, semantic segmentation (single scale)"
MASK2FORMER_PROTOCOLS = {"ade": ("ADE20K val", "shorter side 512, whole image (protocol=mask2former_ade20k)"),
                         "ade640": ("ADE20K val", "shorter side 640, whole image (protocol=mask2former_ade20k_640)"),
                         "cityscapes": ("Cityscapes val", "the whole 2048 x 1024 image (protocol=mask2former_cityscapes)")}
PUBLISHED: dict[str, dict[str, Any]] = {
    **{f"nvidia/segformer-b{b}-finetuned-ade-{size}-{size}": {
        "dataset": "ADE20K val", "mIoU": miou,
        "protocol": f"shorter side {size}, whole image" + (" (protocol=mmseg_ade20k)" if size == 512 else ""),
        "source": SEGFORMER_PAPER}
       for b, miou, size in ((0, 37.4, 512), (1, 42.2, 512), (2, 46.5, 512), (3, 49.4, 512), (4, 50.3, 512),
                             (5, 51.0, 640))},
    **{f"nvidia/segformer-b{b}-finetuned-cityscapes-1024-1024": {
        "dataset": "Cityscapes val", "mIoU": miou, "protocol": "sliding 1024x1024 windows (protocol=mmseg_cityscapes)",
        "source": SEGFORMER_PAPER}
       for b, miou in ((0, 76.2), (1, 78.5), (2, 81.0), (3, 81.7), (4, 82.3), (5, 82.4))},
    **{f"openmmlab/upernet-convnext-{size}": {
        "dataset": "ADE20K val", "mIoU": miou, "protocol": "shorter side 512, whole image (protocol=mmseg_ade20k)",
        "source": CONVNEXT_PAPER} for size, miou in (("tiny", 46.0), ("small", 48.7))},
    **{f"openmmlab/upernet-swin-{size}": {
        "dataset": "ADE20K val", "mIoU": miou, "protocol": "shorter side 512, whole image (protocol=mmseg_ade20k)",
        "source": SWIN_MMSEG} for size, miou in (("tiny", 44.41), ("small", 47.72), ("base", 50.76))},
    **{f"facebook/mask2former-swin-{name}-semantic": {
        "dataset": MASK2FORMER_PROTOCOLS[protocol][0], "mIoU": miou, "protocol": MASK2FORMER_PROTOCOLS[protocol][1],
        "source": MASK2FORMER_ZOO}
       for name, miou, protocol in (("tiny-ade", 47.7, "ade"), ("small-ade", 51.3, "ade"), ("base-ade", 52.4, "ade640"),
                                    ("base-IN21k-ade", 53.9, "ade640"), ("large-ade", 56.1, "ade640"),
                                    ("tiny-cityscapes", 82.1, "cityscapes"), ("small-cityscapes", 82.6, "cityscapes"),
                                    ("base-IN21k-cityscapes", 83.3, "cityscapes"),
                                    ("large-cityscapes", 83.3, "cityscapes"))},
}


def licence_of(folder: Path) -> str | None:
    """The ``license:`` of the source's model card (its YAML front matter), where it states one."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    front = re.match(r"---\n(.*?)\n---", card.read_text(errors="replace"), re.S)
    found = re.search(r"^license:\s*(.+)$", front.group(1), re.M) if front else None
    return found.group(1).strip().strip("'\"") if found else None


def convert(source: str, output: str, name: str | None = None) -> dict[str, Any]:
    """Import ``source`` and write ``output``; returns what the model card says about the source."""
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"source={folder}: no such folder; give a transformers model folder (config.json + "
                                f"model.safetensors), e.g. huggingface-cli download <name> --local-dir {folder}")
    module = SegmentationModule.from_pretrained(str(folder))
    if module.imported is None:
        raise ValueError(f"source={folder} is already this project's model folder; nothing to convert")
    record = module.imported
    hub_name = name or record["source"].get("name")
    record["source"].update(name=hub_name, licence=licence_of(folder), published=PUBLISHED.get(hub_name or ""))
    published = record["source"]["published"]
    metrics = {"protocol": published["protocol"], "split": published["dataset"], "dataset": published["source"],
               "mIoU": published["mIoU"] / 100, "quoted": True} if published else None
    module.provenance = {"imported_from": record["source"], "dataset_settings": record["dataset"]}
    module.save_pretrained(output, metrics)
    return record


def describe(record: dict[str, Any], output: str) -> str:
    source = record["source"]
    lines = [f"wrote {output} from {source['folder']} ({source['architecture']}"
             + (f", {source['name']}" if source.get("name") else "") + ")",
             f"licence    {source.get('licence') or 'not stated in the source'}",
             f"labels     reduce_zero_label={record['dataset']['reduce_zero_label']} (dataset.reduce_zero_label)"]
    published = source.get("published")
    lines.append(f"published  {published['mIoU']} mIoU on {published['dataset']}, {published['protocol']} "
                 f"({published['source']}; quoted, not measured)" if published else "published  no figure known")
    return "\n".join(lines)
