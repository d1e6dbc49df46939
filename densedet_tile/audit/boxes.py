"""The shape check every audit function makes of the product boxes it is given.

Boxes are ``xyxy`` pixels of the upright image, one row of four numbers per box. Reshaping
whatever arrives to (N, 4) would read eight numbers as two boxes, or a (4, 2) array as two
boxes, without a word: the shape is checked instead, once, here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["as_boxes", "require_finite"]


def as_boxes(xyxy: Any, name: str = "boxes") -> np.ndarray:
    """``xyxy`` as a float64 (N, 4) array; :class:`~densedet_tile.errors.InvalidInputError`
    when it is not one. No boxes may come as ``[]`` or an empty (0, 4) or (0, 0) array.
    Boxes whose x2 < x1 or y2 < y1 are refused (xywh boxes given as xyxy: ``find_bays`` failed
    deep inside numpy and ``find_rows`` found no row, without a word); the callers that need
    finite values say so themselves."""
    try:
        a = np.asarray(xyxy, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be an (N, 4) array of numbers, got {type(xyxy).__name__}") from None
    if a.shape in ((0,), (0, 0), (0, 4)):
        return a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise InvalidInputError(f"{name} must have shape (N, 4), got {a.shape}")
    flipped = np.flatnonzero((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1]))
    if len(flipped):
        i = int(flipped[0])
        raise InvalidInputError(f"{name}: {len(flipped)} have x2 < x1 or y2 < y1 (the first: box {i}, "
                                f"{a[i].tolist()}); boxes are x1, y1, x2, y2 pixels, not x, y, width, height")
    return a


def require_finite(a: np.ndarray, who: str = "boxes") -> None:
    """Raise :class:`~densedet_tile.errors.InvalidInputError` naming how many boxes of ``a``
    ((N, 4), from :func:`as_boxes`) have a coordinate that is not a finite number, and the first
    of them, as :func:`~densedet_tile.audit.analysis.run_audit` does."""
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if len(bad):
        i = int(bad[0])
        raise InvalidInputError(f"{who}: {len(bad)} have a coordinate that is not a finite number (the first: box "
                                f"{i}, {a[i].tolist()})")
