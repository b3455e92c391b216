"""What the published benchmark layouts need beyond folders and suffixes (which their ``conf/dataset/<name>.yaml`` give, with
the preparation steps a missing folder is refused with): label remappings."""
from __future__ import annotations

from typing import Mapping

# Cityscapes' label ids -> train ids, the official table (cityscapesscripts/helpers/labels.py): 19 classes, the
# rest (void, rare and ambiguous classes) ignored
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

# dataset.label_ids=true: masks of raw label ids instead of prepared train ids, by the train-id suffix they replace
LABEL_IDS: dict[str, tuple[str, Mapping[int, int]]] = {
    "_gtFine_labelTrainIds.png": ("_gtFine_labelIds.png", CITYSCAPES_TRAIN_IDS),
}


def label_ids_layout(mask_ext: str, ignore_index: int) -> tuple[str, dict[int, int]]:
    """(mask suffix, stored value -> class) for reading raw label ids where ``mask_ext`` names prepared train ids."""
    if mask_ext not in LABEL_IDS:
        raise ValueError(f"dataset.label_ids=true: no label-id table is known for masks '*{mask_ext}' (known: "
                         f"{', '.join(LABEL_IDS)}); give dataset.mask_value_map instead")
    suffix, table = LABEL_IDS[mask_ext]
    return suffix, {value: table.get(value, ignore_index) for value in range(256)}


class ValueMap(dict):
    """Stored value -> class for the values listed; a value past them (a 16-bit mask's) moves by ``beyond``."""

    beyond = 0
    keep: int | None = None  # a value never moved (the ignore value)


def reduce_zero_label(value_map: Mapping[int, int] | None, ignore_index: int) -> dict[int, int]:
    """mmsegmentation's ``reduce_zero_label`` after ``value_map``: 0 ("other", ADE20K) is ignored, every other class
    moves down by one, ``ignore_index`` stays (16-bit masks too: values past 255 move down by one)."""
    mapped = {v: (value_map or {}).get(v, v) for v in range(256)}
    reduced = ValueMap({v: ignore_index if m in (0, ignore_index) else m - 1 for v, m in mapped.items()})
    reduced.beyond, reduced.keep = -1, ignore_index
    return reduced
