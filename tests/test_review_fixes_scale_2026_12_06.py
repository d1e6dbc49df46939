"""The scale rules for detectors other than the built-in model (an outside review, 2026-12-06):
what ``--tile auto`` does where a detector declares no product size, panoramas wider than the
whole-image probe's 4:1, auto's own choices against the engine's limits, and the input size a
warning names."""

from __future__ import annotations

import numpy as np

import densedet_tile as dt
from densedet_tile import Detections


class BandDetector:
    """Boxes each bright rectangle of the array it gets (rows of bars on a dark background), but
    only those whose height there lies in [lo, hi] px: a model that knows one scale."""

    def __init__(self, lo: float, hi: float, input_size: int | None = 640, product_size: float | None = None,
                 photo_rule: tuple[float, float] | None = None) -> None:
        self.lo, self.hi, self.input_size = lo, hi, input_size
        if product_size is not None:
            self.product_size = product_size
        self.rule = photo_rule
        self.seen: list[tuple[int, int]] = []

    def photo_scale(self, width: int, height: int) -> float | None:
        if self.rule is None:
            return None
        return min(self.rule[0] / max(width, height), self.rule[1] / min(width, height))

    def predict(self, tiles):
        out = []
        for t in tiles:
            self.seen.append(t.shape[:2])
            mask = t[..., 0] > 100
            boxes = []
            for y1, y2 in _runs(mask.any(axis=1)):
                for x1, x2 in _runs(mask[y1:y2].any(axis=0)):
                    if self.lo <= y2 - y1 <= self.hi:
                        boxes.append([x1, y1, x2, y2])
            xyxy = np.array(boxes, np.float32).reshape(-1, 4)
            out.append(Detections(xyxy, np.full(len(xyxy), 0.9, np.float32)))
        return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def bars(width: int, height: int, product_h: int, gap: int) -> np.ndarray:
    """Rows of bright bars ``product_h`` tall and 0.6 of that wide, ``gap`` apart."""
    img = np.full((height, width, 3), 10, np.uint8)
    w = max(2, int(product_h * 0.6))
    y = gap
    while y + product_h + gap <= height:
        for x in range(gap, width - w - gap, w + gap):
            img[y:y + product_h, x:x + w] = 220
        y += product_h + 2 * gap
    return img


def count_bars(width: int, height: int, product_h: int, gap: int) -> int:
    w = max(2, int(product_h * 0.6))
    return len(range(gap, width - w - gap, w + gap)) * len(range(gap, height - product_h - gap + 1, product_h + 2 * gap))


def test_a_scale_replacing_a_tile_names_the_input_size_the_run_used(caplog):
    # a 500 px image is smaller than the 0.5 scale's 1280 px tile: shown whole, at 250 px; the
    # warning said the model's own 640
    img = bars(500, 400, 40, 8)
    with caplog.at_level("WARNING", logger="densedet_tile.scale"):
        res = dt.detect_image(img, BandDetector(10, 100), tile=300, scale=0.5)
    assert res.settings["input_size"] == 250
    assert "tile 300 replaced by 500 px: the model sees each tile at 250 px" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.scale"):  # tiles of the model's size: its size
        dt.detect_image(bars(3000, 400, 40, 8), BandDetector(10, 100), tile=300, scale=0.5)
    assert "tile 300 replaced by 1280 px: the model sees each tile at 640 px" in caplog.text
