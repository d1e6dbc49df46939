"""The built-in model's default settings, shared by the runtimes and the torch network.

Kept apart from :mod:`.builtin` (runtimes, decode) and :mod:`.shelfnet` (the torch network) so
that both can read it without importing each other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONFIG"]

#: Architecture and inference settings; the weights files carry their own copy of the first.
DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [16, 32, 64, 128, 256],  # stem1, stem2 (stride 4), stride 8, 16, 32
    "blocks": [2, 2, 2],  # residual blocks at strides 8, 16, 32
    "neck": 80,
    "input_size": 640,  # longer tile side the model was trained for
    "stride": 8,
    "score_thr": 0.45,  # chosen on real photos: the lowest count error there (MODEL_CARD.md, "Thresholds")
    # boxes are decoded down to score_thr - count_band - CONFIRM_BAND, so the engine can say how
    # much the count moves within +-count_band of the threshold (RunSpec.count_band; MODEL_CARD.md, "Count range")
    "count_band": 0.05,  # = densedet_tile.types.COUNT_BAND
    "nms_iou": 0.5,
    # cut a box whose content repeats vertically into one box per layer (piles of packs; the
    # model was trained on standing products only): densedet_tile/detector/stacks.py
    "split_stacks": True,
    "max_det": 1000,
    "topk": 2000,  # peaks kept (by score) before the NMS
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
