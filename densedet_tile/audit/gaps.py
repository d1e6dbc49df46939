"""Shelf gaps: empty stretches along a row, wider than ``k`` times its median product width.

Along each row the boxes are sorted by their left edge and the covered stretch is tracked with
a running maximum of right edges; every uncovered stretch between two boxes wider than
``k * median_width`` is a gap. With ``end_gaps`` the stretches between the fixture's ends
(the leftmost and rightmost product of any row, or ``span`` if given) and the row's first /
last product count too, when wider than ``end_k * median_width`` (default ``k + 1``: a shelf
rarely fits a whole number of products, so up to one product width of slack at its end is
normal, but an emptied shelf end is an out-of-stock like any other).

Coordinates are pixels of the upright image. A gap's vertical extent is its row's, mapped
back through the tilt, so its ``polygon`` is a parallelogram on a tilted shelf and ``xyxy``
its bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .rows import RowLayout

__all__ = ["Gap", "find_gaps", "DEFAULT_GAP_K"]

#: Default gap threshold in median product widths (chosen on synthetic aisles, see docs/audit.md).
DEFAULT_GAP_K = 0.7


@dataclass(frozen=True)
class Gap:
    """An empty stretch of shelf: row index, horizontal extent ``x1..x2`` (pixels), its width in
    pixels and in the row's median product widths, where it lies (``interior``, ``left_end``,
    ``right_end``), and its outline: ``polygon`` (4 (x, y) corners) and bounding ``xyxy``."""

    row: int
    x1: float
    x2: float
    width_px: float
    width_products: float
    kind: str
    polygon: tuple[tuple[float, float], ...]
    xyxy: tuple[float, float, float, float]


def find_gaps(
    xyxy: np.ndarray,
    layout: RowLayout,
    *,
    k: float = DEFAULT_GAP_K,
    end_gaps: bool = True,
    end_k: float | None = None,
    span: tuple[float, float] | None = None,
) -> list[Gap]:
    """Gaps of every row of ``layout`` (see module doc).

    ``xyxy`` (N, 4) the same boxes the layout was built from. ``span`` (x_left, x_right) is the
    fixture's extent in image x for end gaps; default: from the leftmost to the rightmost box
    of any row, with the row ends compared along the tilt.
    Returns gaps row by row, left to right.
    """
    if not (isinstance(k, (int, float)) and np.isfinite(k) and k > 0):
        raise InvalidInputError(f"gap k must be a positive number of product widths, got {k!r}")
    end_k = k + 1.0 if end_k is None else end_k
    if not (isinstance(end_k, (int, float)) and np.isfinite(end_k) and end_k > 0):
        raise InvalidInputError(f"end gap k must be a positive number of product widths, got {end_k!r}")
    a = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    if len(a) != len(layout.assignment):
        raise InvalidInputError(f"{len(a)} boxes but the row layout was built from {len(layout.assignment)}")
    if not layout.rows:
        return []
    # On a tilted fixture its vertical ends are tilted too: compare row ends after shifting each
    # row by (its height) * tan(tilt), the x part of undoing the rotation.
    tan = float(np.tan(np.radians(layout.tilt_deg)))
    dx = {r.index: (r.top + r.bottom) / 2 * tan for r in layout.rows}
    if span is None:
        span = (min(r.x_start + dx[r.index] for r in layout.rows), max(r.x_end + dx[r.index] for r in layout.rows))
    else:
        dx = {r.index: 0.0 for r in layout.rows}
    gaps: list[Gap] = []
    for row in layout.rows:
        left_end, right_end = span[0] - dx[row.index], span[1] - dx[row.index]
        sel = np.flatnonzero(layout.assignment == row.index)
        b = a[sel]
        order = np.argsort(b[:, 0], kind="stable")
        x1, x2 = b[order, 0], b[order, 2]
        covered = np.maximum.accumulate(x2)
        starts = covered[:-1]
        ends = x1[1:]
        stretches = [(s, e, "interior") for s, e in zip(starts.tolist(), ends.tolist())]
        if end_gaps:
            stretches = [(left_end, float(x1[0]), "left_end")] + stretches + [(float(covered[-1]), right_end, "right_end")]
        for s, e, kind in stretches:
            limit = (k if kind == "interior" else end_k) * row.median_width
            if e - s > limit:
                gaps.append(_make_gap(layout, row.index, s, e, kind, row.median_width, row.top, row.bottom))
    return gaps


def _make_gap(layout: RowLayout, r: int, x1: float, x2: float, kind: str, med_w: float, top: float, bottom: float) -> Gap:
    xs = np.array([x1, x2, x2, x1])
    ys = layout.y_at(np.array([top, top, bottom, bottom]), xs)
    poly = tuple((float(x), float(y)) for x, y in zip(xs, ys))
    return Gap(
        row=r,
        x1=float(x1),
        x2=float(x2),
        width_px=float(x2 - x1),
        width_products=float((x2 - x1) / med_w) if med_w > 0 else float("inf"),
        kind=kind,
        polygon=poly,
        xyxy=(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
    )
