"""Shared helpers for merge tests: random box sets and slow, obvious references."""

from __future__ import annotations

import numpy as np


def random_boxes(rng: np.random.Generator, n: int, *, extent: float = 500.0, size=(2.0, 80.0)) -> np.ndarray:
    """``n`` random xyxy float64 boxes in [0, extent]^2 (some degenerate when size[0] == 0)."""
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(size[0], size[1], (n, 2))
    return np.hstack([xy, xy + wh])


def ref_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_order(scores: np.ndarray) -> list[int]:
    return sorted(range(len(scores)), key=lambda k: (-float(scores[k]), k))


def ref_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, labels=None, groups=None) -> list[int]:  # noqa: ANN001
    kept: list[int] = []
    for k in ref_order(scores):
        if all(
            (labels is not None and labels[k] != labels[q])
            or (groups is not None and groups[k] == groups[q])
            or ref_iou(boxes[k], boxes[q]) <= thr
            for q in kept
        ):
            kept.append(k)
    return kept
